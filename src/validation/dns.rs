//! The DNS TXT self-check: ask the zone's authoritative name servers directly, the way a CA does
//! before it accepts a DNS challenge, and say what was seen.
//!
//! Discovery (unless the servers are given): walk up from the record name with the recursive
//! resolver until a name has an SOA (the zone apex), look up the zone's NS records, resolve each
//! name server to its addresses. Then every address is asked for the TXT record with recursion off
//! (UDP, TCP when the answer is truncated). All of them must hold the expected value; the first one
//! that does not is reported. CNAMEs at the record name are followed (up to 8), as CAs do.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::join_all;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the checker finds and asks name servers.
#[derive(Clone, Debug)]
pub struct DnsCheckerConfig {
    /// Ask exactly these servers as the authoritative ones and skip discovery (tests; split-horizon
    /// setups). The port may be anything.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Recursive resolvers used for discovery; `None` reads the system configuration
    /// (/etc/resolv.conf).
    pub resolvers: Option<Vec<SocketAddr>>,
    /// Port to ask discovered authoritative servers on (53 in real life).
    pub nameserver_port: u16,
    /// Time limit of one query to one server.
    pub timeout: Duration,
    /// How many times a query that timed out is sent (UDP loses packets).
    pub attempts: usize,
}

impl Default for DnsCheckerConfig {
    fn default() -> Self {
        DnsCheckerConfig {
            nameservers: None,
            resolvers: None,
            nameserver_port: 53,
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl DnsCheckerConfig {
    /// Asks exactly `servers`, no discovery.
    pub fn with_nameservers(servers: Vec<SocketAddr>) -> Self {
        DnsCheckerConfig { nameservers: Some(servers), ..Default::default() }
    }
}

/// The checker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsCheckerError {
    #[error("cannot read the system DNS configuration: {0}")]
    SystemConfig(String),
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
}

/// What the authoritative servers answered for a TXT record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxtObservation {
    /// The TXT values seen (on the server the diagnosis is about; all of them when all agree).
    pub found: Vec<String>,
    /// True only when every authoritative server holds the expected value.
    pub matched: bool,
    /// One sentence for status, e.g. `TXT record not found at _dnsauth.example.com on
    /// ns1.example.com (192.0.2.1:53)`.
    pub diagnosis: String,
    /// The server the diagnosis is about (all of them, comma-separated, when they agree).
    pub server: String,
}

/// Asks authoritative name servers for TXT records.
pub struct DnsChecker {
    config: DnsCheckerConfig,
    resolver: Option<TokioResolver>,
}

/// One authoritative server to ask.
#[derive(Clone, Debug)]
struct Target {
    addr: SocketAddr,
    label: String,
}

/// One server's answer for one name.
#[derive(Clone, Debug)]
enum Seen {
    Txt(Vec<String>),
    Cname(Name),
    Empty,
    NxDomain,
    Failed(String),
}

const MAX_CNAME_HOPS: usize = 8;

impl DnsChecker {
    /// Builds a checker. Reads the system resolver configuration unless `nameservers` or
    /// `resolvers` are given.
    pub fn new(config: DnsCheckerConfig) -> Result<DnsChecker, DnsCheckerError> {
        let resolver = if config.nameservers.is_some() {
            None
        } else {
            let addrs = match &config.resolvers {
                Some(addrs) => addrs.clone(),
                None => system_resolvers()?,
            };
            let servers = addrs
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            let opts = builder.options_mut();
            opts.timeout = config.timeout;
            opts.attempts = config.attempts.max(1);
            Some(builder.build().map_err(|e| DnsCheckerError::Resolver(e.to_string()))?)
        };
        Ok(DnsChecker { config, resolver })
    }

    /// Checks that every authoritative server of `record_name`'s zone serves a TXT record at
    /// `record_name` whose value is exactly `expected`. Never fails: problems are in the diagnosis.
    pub async fn check_txt(&self, record_name: &str, expected: &str) -> TxtObservation {
        let original = record_name.trim_end_matches('.').to_owned();
        let mut name = match fqdn(record_name) {
            Ok(n) => n,
            Err(reason) => return failure(format!("{original:?} is not a DNS name: {reason}"), ""),
        };
        let mut via = Vec::new();
        for _ in 0..=MAX_CNAME_HOPS {
            let display = show(&name);
            let targets = match self.targets_for(&name).await {
                Ok(t) => t,
                Err(diagnosis) => return failure(with_via(diagnosis, &via), ""),
            };
            let seen = join_all(targets.iter().map(|t| self.ask_txt(t.addr, &name))).await;
            // Follow a CNAME when no server has TXT data at the name itself.
            let has_txt = seen.iter().any(|s| matches!(s, Seen::Txt(_)));
            let cname = seen.iter().find_map(|s| match s {
                Seen::Cname(target) => Some(target.clone()),
                _ => None,
            });
            if let (false, Some(target)) = (has_txt, cname) {
                via.push(format!("{display} is an alias of {}", show(&target)));
                name = target;
                continue;
            }
            return judge(&display, expected, &targets, &seen, &via);
        }
        failure(with_via(format!("more than {MAX_CNAME_HOPS} CNAMEs from {original}"), &via), "")
    }

    async fn targets_for(&self, name: &Name) -> Result<Vec<Target>, String> {
        if let Some(servers) = &self.config.nameservers {
            return Ok(servers.iter().map(|a| Target { addr: *a, label: a.to_string() }).collect());
        }
        let Some(resolver) = &self.resolver else {
            return Err("no resolver configured".into());
        };
        let zone = find_zone(resolver, name).await?;
        let ns_lookup = resolver
            .lookup(zone.clone(), RecordType::NS)
            .await
            .map_err(|e| format!("cannot find the name servers of {}: {e}", show(&zone)))?;
        let ns_names: BTreeSet<Name> = ns_lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.to_lowercase()),
                _ => None,
            })
            .collect();
        if ns_names.is_empty() {
            return Err(format!("zone {} has no NS records", show(&zone)));
        }
        let mut targets = Vec::new();
        let mut unresolved = Vec::new();
        for ns in &ns_names {
            match resolver.lookup_ip(ns.clone()).await {
                Ok(ips) => {
                    for ip in ips.iter() {
                        targets.push(Target {
                            addr: SocketAddr::new(ip, self.config.nameserver_port),
                            label: format!("{} ({})", show(ns), SocketAddr::new(ip, self.config.nameserver_port)),
                        });
                    }
                }
                Err(e) => unresolved.push(format!("{}: {e}", show(ns))),
            }
        }
        if targets.is_empty() {
            return Err(format!("the name servers of {} do not resolve ({})", show(&zone), unresolved.join("; ")));
        }
        Ok(targets)
    }

    /// The addresses `host` resolves to, as the CA fetching an HTTP challenge would find them:
    /// A records (CNAMEs followed) asked of the configured name servers, or the system resolver
    /// when none are configured. `Err` says why the name does not resolve.
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let Some(servers) = &self.config.nameservers else {
            let found = tokio::net::lookup_host((host, 0)).await.map_err(|e| e.to_string())?;
            let ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            return if ips.is_empty() { Err("no addresses".into()) } else { Ok(ips) };
        };
        let mut name = fqdn(host)?;
        let mut last = String::from("no name server configured");
        'hops: for _ in 0..=MAX_CNAME_HOPS {
            for server in servers {
                // Recursion desired: the configured servers may be resolvers rather than the
                // zone's own servers, and authoritative servers ignore the flag.
                let response = match query(*server, &name, RecordType::A, true, &self.config).await {
                    Ok(r) => r,
                    Err(e) => {
                        last = format!("{server}: {e}");
                        continue;
                    }
                };
                match response.metadata.response_code {
                    ResponseCode::NoError => {}
                    ResponseCode::NXDomain => return Err(format!("{} does not exist ({server})", show(&name))),
                    other => {
                        last = format!("{server} answered {other}");
                        continue;
                    }
                }
                let mut ips = Vec::new();
                let mut cname = None;
                for record in &response.answers {
                    if record.name.to_lowercase() != name.to_lowercase() {
                        continue;
                    }
                    match &record.data {
                        RData::A(a) => ips.push(IpAddr::V4(a.0)),
                        RData::CNAME(c) => cname = Some(c.0.clone()),
                        _ => {}
                    }
                }
                if !ips.is_empty() {
                    return Ok(ips);
                }
                if let Some(target) = cname {
                    name = target;
                    continue 'hops;
                }
                return Err(format!("{} has no A record ({server})", show(&name)));
            }
            return Err(last);
        }
        Err(format!("more than {MAX_CNAME_HOPS} CNAMEs"))
    }

    /// Where CNAMEs at `name` lead (up to 8 hops), as the CA's resolver follows them: the name a
    /// delegated record must be published at. `name` itself when it is no alias (or on errors).
    pub async fn follow_cname(&self, name: &str) -> String {
        let Ok(mut current) = fqdn(name) else { return name.to_owned() };
        for _ in 0..MAX_CNAME_HOPS {
            let Ok(targets) = self.targets_for(&current).await else { break };
            let mut next = None;
            for t in &targets {
                if let Seen::Cname(target) = self.ask_txt(t.addr, &current).await {
                    next = Some(target);
                    break;
                }
            }
            match next {
                Some(target) => current = target,
                None => break,
            }
        }
        show(&current)
    }

    /// The target of the CNAME at `name` (one hop), as its authoritative servers answer; `None`
    /// when it is no alias (or on errors).
    pub async fn cname_at(&self, name: &str) -> Option<String> {
        let name = fqdn(name).ok()?;
        let targets = self.targets_for(&name).await.ok()?;
        for t in &targets {
            if let Seen::Cname(target) = self.ask_txt(t.addr, &name).await {
                return Some(show(&target));
            }
        }
        None
    }

    /// Checks that every authoritative server of `record_name`'s zone serves a CNAME at
    /// `record_name` whose target is `expected` (case-insensitive, trailing dot ignored), as the
    /// CA looks for a `DNS_CNAME` validation. Never fails: problems are in the diagnosis.
    pub async fn check_cname(&self, record_name: &str, expected: &str) -> TxtObservation {
        let original = record_name.trim_end_matches('.').to_owned();
        let name = match fqdn(record_name) {
            Ok(n) => n,
            Err(reason) => return failure(format!("{original:?} is not a DNS name: {reason}"), ""),
        };
        let targets = match self.targets_for(&name).await {
            Ok(t) => t,
            Err(diagnosis) => return failure(diagnosis, ""),
        };
        let seen = join_all(targets.iter().map(|t| self.ask_txt(t.addr, &name))).await;
        judge_cname(&show(&name), expected, &targets, &seen)
    }

    /// Checks a DNS challenge as the CA does: its CNAME (`recordType: CNAME`) or its TXT value.
    pub async fn check_challenge(&self, c: &crate::api::Challenge) -> TxtObservation {
        match c.is_cname() {
            true => self.check_cname(&c.target, &c.expected_value).await,
            false => self.check_txt(&c.target, &c.expected_value).await,
        }
    }

    async fn ask_txt(&self, server: SocketAddr, name: &Name) -> Seen {
        let response = match query(server, name, RecordType::TXT, false, &self.config).await {
            Ok(r) => r,
            Err(e) => return Seen::Failed(e),
        };
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Seen::NxDomain,
            other => return Seen::Failed(format!("answered {other}")),
        }
        let mut txt = Vec::new();
        let mut cname = None;
        for record in &response.answers {
            if record.name.to_lowercase() != name.to_lowercase() {
                continue;
            }
            match &record.data {
                RData::TXT(t) => {
                    txt.push(t.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
                }
                RData::CNAME(c) => cname = Some(c.0.clone()),
                _ => {}
            }
        }
        if !txt.is_empty() {
            return Seen::Txt(txt);
        }
        if let Some(target) = cname {
            return Seen::Cname(target);
        }
        if !response.metadata.authoritative {
            return Seen::Failed("is not authoritative for this name (no AA flag)".into());
        }
        Seen::Empty
    }
}

fn judge(name: &str, expected: &str, targets: &[Target], seen: &[Seen], via: &[String]) -> TxtObservation {
    let holds = |s: &Seen| matches!(s, Seen::Txt(v) if v.iter().any(|x| x == expected));
    let describe = |s: &Seen, label: &str| -> (String, Vec<String>) {
        match s {
            Seen::Txt(values) => (
                format!(
                    "found {} but expected \"{expected}\" at {name} on {label}",
                    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
                ),
                values.clone(),
            ),
            Seen::Empty => (format!("TXT record not found at {name} on {label}"), Vec::new()),
            Seen::NxDomain => (format!("name does not resolve: {name} does not exist on {label}"), Vec::new()),
            Seen::Cname(t) => (format!("{name} is an alias of {} on {label}", show(t)), Vec::new()),
            Seen::Failed(e) => (format!("{e} asking {label}"), Vec::new()),
        }
    };
    let all_labels = targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(", ");
    let good = seen.iter().filter(|s| holds(s)).count();
    if good == seen.len() && !seen.is_empty() {
        let mut found: Vec<String> = Vec::new();
        for s in seen {
            if let Seen::Txt(values) = s {
                for v in values {
                    if !found.contains(v) {
                        found.push(v.clone());
                    }
                }
            }
        }
        return TxtObservation {
            found,
            matched: true,
            diagnosis: with_via(format!("found the expected TXT record at {name} on {all_labels}"), via),
            server: all_labels,
        };
    }
    // Report the first server that does not hold the value; failures (timeouts) first.
    let bad = first_bad(seen, targets, holds);
    let Some((bad_seen, bad_target)) = bad else {
        return failure(with_via(format!("no authoritative server answered for {name}"), via), "");
    };
    let (mut diagnosis, found) = describe(bad_seen, &bad_target.label);
    if good > 0 {
        diagnosis = format!("servers disagree: {good} of {} have the expected value; {diagnosis}", seen.len());
    }
    TxtObservation { found, matched: false, diagnosis: with_via(diagnosis, via), server: bad_target.label.clone() }
}

/// The judgement of a CNAME challenge: every server must answer a CNAME at `name` whose target
/// is `expected`.
fn judge_cname(name: &str, expected: &str, targets: &[Target], seen: &[Seen]) -> TxtObservation {
    let want = expected.trim_end_matches('.');
    let holds = |s: &Seen| matches!(s, Seen::Cname(t) if show(t).eq_ignore_ascii_case(want));
    let create = format!("create CNAME {name} → {want}");
    let all_labels = targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(", ");
    let good = seen.iter().filter(|s| holds(s)).count();
    if good == seen.len() && !seen.is_empty() {
        return TxtObservation {
            found: vec![want.to_owned()],
            matched: true,
            diagnosis: format!("found the expected CNAME {name} → {want} on {all_labels}"),
            server: all_labels,
        };
    }
    let bad = first_bad(seen, targets, holds);
    let Some((bad_seen, bad_target)) = bad else {
        return failure(format!("no authoritative server answered for {name}"), "");
    };
    let label = &bad_target.label;
    let (mut diagnosis, found) = match bad_seen {
        Seen::Cname(t) => (
            format!("{name} is a CNAME to {} on {label}, but the CA expects {want}: change it", show(t)),
            vec![show(t)],
        ),
        Seen::Txt(values) => (
            format!(
                "{name} holds TXT {} on {label}, but the CA looks for a CNAME: remove the TXT and {create}",
                values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
            ),
            values.clone(),
        ),
        Seen::Empty | Seen::NxDomain => (format!("CNAME record not found at {name} on {label}: {create}"), Vec::new()),
        Seen::Failed(e) => (format!("{e} asking {label}"), Vec::new()),
    };
    if good > 0 {
        diagnosis = format!("servers disagree: {good} of {} have the expected CNAME; {diagnosis}", seen.len());
    }
    TxtObservation { found, matched: false, diagnosis, server: label.clone() }
}

/// The first server that does not hold what is wanted, reporting failures (timeouts) first.
fn first_bad<'a>(
    seen: &'a [Seen],
    targets: &'a [Target],
    holds: impl Fn(&Seen) -> bool,
) -> Option<(&'a Seen, &'a Target)> {
    let mut pairs = seen.iter().zip(targets);
    pairs.clone().find(|(s, _)| matches!(s, Seen::Failed(_))).or_else(|| pairs.find(|(s, _)| !holds(s)))
}

fn failure(diagnosis: String, server: &str) -> TxtObservation {
    TxtObservation { found: Vec::new(), matched: false, diagnosis, server: server.to_owned() }
}

fn with_via(diagnosis: String, via: &[String]) -> String {
    if via.is_empty() { diagnosis } else { format!("{diagnosis} ({})", via.join(", ")) }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("empty".into());
    }
    let text = if trimmed.ends_with('.') { trimmed.to_owned() } else { format!("{trimmed}.") };
    Name::from_ascii(&text).map_err(|e| e.to_string())
}

/// A name without its trailing dot, for messages.
fn show(name: &Name) -> String {
    let text = name.to_ascii();
    text.trim_end_matches('.').to_owned()
}

/// The `nameserver` lines of /etc/resolv.conf (hickory-resolver's `system-config` feature is not
/// enabled in this build, and this is all certorder needs from it).
fn system_resolvers() -> Result<Vec<SocketAddr>, DnsCheckerError> {
    const PATH: &str = "/etc/resolv.conf";
    let text = std::fs::read_to_string(PATH).map_err(|e| DnsCheckerError::SystemConfig(format!("{PATH}: {e}")))?;
    let servers = parse_resolv_conf(&text);
    if servers.is_empty() {
        return Err(DnsCheckerError::SystemConfig(format!("{PATH} lists no nameserver")));
    }
    Ok(servers)
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => {
                    // drop an IPv6 zone (fe80::1%eth0): not usable without an interface index here
                    let addr = addr.split('%').next().unwrap_or(addr);
                    addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
                }
                _ => None,
            }
        })
        .collect()
}

/// Walks up from `name` until a name has an SOA record of its own: that is the zone apex.
async fn find_zone(resolver: &TokioResolver, name: &Name) -> Result<Name, String> {
    let mut candidate = name.clone();
    loop {
        match resolver.lookup(candidate.clone(), RecordType::SOA).await {
            Ok(lookup) => {
                let apex = lookup.answers().iter().find_map(|r| match &r.data {
                    RData::SOA(_) if r.name.to_lowercase() == candidate.to_lowercase() => Some(r.name.clone()),
                    _ => None,
                });
                if let Some(apex) = apex {
                    return Ok(apex);
                }
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => {
                return Err(format!(
                    "cannot find the zone of {}: the resolver failed asking for {} SOA: {e}",
                    show(name),
                    show(&candidate)
                ));
            }
        }
        if candidate.num_labels() <= 1 {
            return Err(format!("name does not resolve: no DNS zone found for {}", show(name)));
        }
        candidate = candidate.base_name();
    }
}

/// Sends one query to `server` (recursion off unless `recursion`): UDP, then TCP if the answer
/// was truncated.
async fn query(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    recursion: bool,
    config: &DnsCheckerConfig,
) -> Result<Message, String> {
    let mut message = Message::query();
    message.metadata.recursion_desired = recursion;
    message.add_query(Query::query(name.clone(), record_type));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    let id = message.metadata.id;
    let bytes = message.to_vec().map_err(|e| format!("cannot encode the query ({e}) for"))?;

    let mut last = String::new();
    for _ in 0..config.attempts.max(1) {
        match tokio::time::timeout(config.timeout, udp_exchange(server, &bytes, id)).await {
            Ok(Ok(Some(response))) if !response.metadata.truncation => return Ok(response),
            // Truncated, or too long to trust: asked again over TCP.
            Ok(Ok(_)) => {
                return match tokio::time::timeout(config.timeout, tcp_exchange(server, &bytes, id)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("timeout ({:?}, TCP)", config.timeout)),
                };
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("timeout ({:?})", config.timeout),
        }
    }
    Err(last)
}

/// The largest UDP answer read: the query offers 1232 bytes (EDNS), so an answer filling this
/// buffer broke that limit and may have been cut short; it is asked again over TCP (`None`).
const UDP_ANSWER_MAX: usize = 4096;

async fn udp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Option<Message>, String> {
    let bind: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| format!("socket error ({e})"))?;
    socket.connect(server).await.map_err(|e| format!("cannot connect ({e})"))?;
    socket.send(bytes).await.map_err(|e| format!("send failed ({e})"))?;
    let mut buf = vec![0u8; UDP_ANSWER_MAX];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| format!("no answer ({e})"))?;
        if n == buf.len() {
            return Ok(None);
        }
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id => return Ok(Some(m)),
            Ok(_) => continue, // a late answer to something else
            Err(e) => return Err(format!("unreadable answer ({e})")),
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let mut stream =
        tokio::net::TcpStream::connect(server).await.map_err(|e| format!("cannot connect over TCP ({e})"))?;
    let len = u16::try_from(bytes.len()).map_err(|_| "query too large".to_owned())?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.map_err(|e| format!("TCP send failed ({e})"))?;
    let mut len_buf = [0u8; 2];
    stream.read_exact(&mut len_buf).await.map_err(|e| format!("TCP read failed ({e})"))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len_buf) as usize];
    stream.read_exact(&mut buf).await.map_err(|e| format!("TCP read failed ({e})"))?;
    let message = Message::from_vec(&buf).map_err(|e| format!("unreadable answer ({e})"))?;
    if message.metadata.id != id {
        return Err("answer with a wrong id".into());
    }
    Ok(message)
}

pub mod publish;

#[cfg(test)]
mod tests;
