//! `certorder status` and `certorder check`: what an order did, what it waits for, and what the
//! CA will see — for the people on call.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{ToolError, get_order};
use crate::api::{CertificateOrder, CertificateOrderStatus, Challenge, ValidationMethod};
use crate::validation::dns::{DnsChecker, DnsCheckerConfig};

fn at(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn get(client: &kube::Client, namespace: &str, name: &str) -> Result<CertificateOrder, ToolError> {
    get_order(&Api::namespaced(client.clone(), namespace), namespace, name).await
}

/// A readable account of the order: where it is, what it waits for (with the exact DNS record or
/// URL and what was seen), its certificate, failures, and its events in time order.
pub async fn status(client: kube::Client, namespace: &str, name: &str) -> Result<String, ToolError> {
    let order = get(&client, namespace, name).await?;
    let events: Api<Event> = Api::namespaced(client, namespace);
    let uid = order.uid().unwrap_or_default();
    let mut timeline: Vec<(DateTime<Utc>, String)> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str()))
        .map(|e| {
            let when = e
                .event_time
                .as_ref()
                .and_then(|t| DateTime::from_timestamp_micros(t.0.as_microsecond()))
                .unwrap_or_default();
            let line = format!(
                "{:<7} {:<18} {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            );
            (when, line)
        })
        .collect();
    timeline.sort();
    Ok(render_status(&order, &timeline))
}

/// The report of [`status`], from the order and its events (pure, for tests).
pub fn render_status(order: &CertificateOrder, timeline: &[(DateTime<Utc>, String)]) -> String {
    let mut out = String::new();
    heading(&mut out, order);
    let Some(status) = &order.status else {
        let _ = writeln!(out, "Phase:    (none yet: the operator has not looked at this order; is certorder running?)");
        return out;
    };
    phase(&mut out, order, status);
    vendor(&mut out, status);
    domain_validation(&mut out, &status.challenges);
    certificate(&mut out, status);
    failures(&mut out, status);
    conditions(&mut out, status);
    events(&mut out, timeline);
    out
}

fn heading(out: &mut String, order: &CertificateOrder) {
    let spec = &order.spec;
    let _ = writeln!(
        out,
        "CertificateOrder {}/{} — {:?} from provider {}, generation {}",
        order.namespace().unwrap_or_default(),
        order.name_any(),
        spec.product.type_,
        spec.provider_ref.name,
        order.metadata.generation.unwrap_or_default()
    );
}

fn phase(out: &mut String, order: &CertificateOrder, status: &CertificateOrderStatus) {
    let stale = status.observed_generation != order.metadata.generation;
    let _ = writeln!(
        out,
        "Phase:    {}{}",
        status.phase,
        if stale { " (for an older generation: the operator is catching up)" } else { "" }
    );
    if let Some(m) = &status.message {
        let _ = writeln!(out, "Now:      {m}");
    }
}

fn vendor(out: &mut String, status: &CertificateOrderStatus) {
    let Some(v) = &status.order else { return };
    let _ = writeln!(
        out,
        "Vendor:   order {} id {} state {} ({} issued)",
        v.name,
        v.id.as_deref().unwrap_or("(not bought yet)"),
        v.state.as_deref().unwrap_or("-"),
        v.issuances
    );
    if let Some(r) = &v.rejection_reason {
        let _ = writeln!(out, "Rejected: {r}");
    }
}

/// `CNAME name → target` or `TXT name = "value"`: the record a DNS challenge asks for.
fn dns_record(c: &Challenge) -> String {
    match c.is_cname() {
        true => format!("CNAME {} → {}", c.target, c.expected_value),
        false => format!("TXT {} = \"{}\"", c.target, c.expected_value),
    }
}

fn domain_validation(out: &mut String, challenges: &[Challenge]) {
    if challenges.is_empty() {
        return;
    }
    let _ = writeln!(out, "Domain validation:");
    for c in challenges {
        let what = match c.method {
            ValidationMethod::DNS => dns_record(c),
            ValidationMethod::HTTP => {
                format!("GET {} must return \"{}\" (no trailing newline)", c.target, c.expected_value)
            }
        };
        let _ = writeln!(out, "  {:<28} {what}", c.domain);
        self_check(out, c);
    }
}

fn self_check(out: &mut String, challenge: &Challenge) {
    match &challenge.self_check {
        Some(s) if s.passed => {
            let _ = writeln!(out, "  {:<28} self-check passed at {}", "", at(&s.last_check_time));
        }
        Some(s) => {
            let _ = writeln!(out, "  {:<28} self-check FAILING at {}: {}", "", at(&s.last_check_time), s.diagnosis);
            if !s.seen.is_empty() {
                let _ = writeln!(out, "  {:<28} seen: {}", "", s.seen);
            }
        }
        None => {
            let _ = writeln!(out, "  {:<28} not checked yet", "");
        }
    }
}

fn certificate(out: &mut String, status: &CertificateOrderStatus) {
    if let Some(c) = &status.certificate {
        let _ = writeln!(
            out,
            "Certificate: serial {} from {}, valid {} to {}, in Secret {}",
            c.serial,
            c.issuer,
            at(&c.not_before),
            at(&c.not_after),
            c.secret_name
        );
    }
    if let Some(t) = &status.renewal_time {
        let _ = writeln!(out, "Renews:   at {}", at(t));
    }
}

fn failures(out: &mut String, status: &CertificateOrderStatus) {
    if status.failures == 0 && status.last_failure.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "Failures: {} in a row; last: {}{}",
        status.failures,
        status.last_failure.as_deref().unwrap_or("-"),
        status.next_attempt_time.map(|t| format!("; next attempt at {}", at(&t))).unwrap_or_default()
    );
}

fn conditions(out: &mut String, status: &CertificateOrderStatus) {
    let _ = writeln!(out, "Conditions:");
    for c in &status.conditions {
        let _ =
            writeln!(out, "  {:<22} {:<6} {:<28} since {}", c.type_, c.status, c.reason, at(&c.last_transition_time));
    }
}

fn events(out: &mut String, timeline: &[(DateTime<Utc>, String)]) {
    if timeline.is_empty() {
        return;
    }
    let _ = writeln!(out, "Events:");
    for (when, line) in timeline {
        let _ = writeln!(out, "  {}  {line}", at(when));
    }
}

/// Runs the DNS self-checks of the order's challenges now, as the CA would, and reports each.
/// Returns the report and whether every check passed.
pub async fn check(
    client: kube::Client,
    namespace: &str,
    name: &str,
    dns_servers: Vec<std::net::SocketAddr>,
) -> Result<(String, bool), ToolError> {
    let order = get(&client, namespace, name).await?;
    let challenges = order.status.map(|s| s.challenges).unwrap_or_default();
    let mut out = String::new();
    if challenges.is_empty() {
        let _ =
            writeln!(out, "CertificateOrder {namespace}/{name} has no challenges to check (not in domain validation)");
        return Ok((out, true));
    }
    let config = if dns_servers.is_empty() {
        DnsCheckerConfig::default()
    } else {
        DnsCheckerConfig::with_nameservers(dns_servers)
    };
    let checker = DnsChecker::new(config).map_err(|e| ToolError::Check(e.to_string()))?;
    let mut all = true;
    for c in &challenges {
        all &= check_one(&checker, c, &mut out).await;
    }
    Ok((out, all))
}

/// Checks one challenge and writes its lines; whether it passed (an HTTP one is skipped: not
/// passed).
async fn check_one(checker: &DnsChecker, c: &Challenge, out: &mut String) -> bool {
    if c.method == ValidationMethod::HTTP {
        let _ = writeln!(
            out,
            "skip {:<28} {}: HTTP checks run in the operator; see `certorder status`",
            c.domain, c.target
        );
        return false;
    }
    let o = checker.check_challenge(c).await;
    let verdict = if o.matched { "ok  " } else { "FAIL" };
    let _ = writeln!(out, "{verdict} {:<28} {}", c.domain, dns_record(c));
    if !o.matched {
        let _ = writeln!(out, "     {:<28} {}", "", o.diagnosis);
    }
    if !o.found.is_empty() {
        let _ = writeln!(out, "     {:<28} found: {:?} on {}", "", o.found, o.server);
    }
    o.matched
}
