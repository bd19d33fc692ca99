//! HTTP file validation: the objects that publish the vendor's files (a ConfigMap, a solver Pod
//! and Service, and a route: a new Ingress, paths added to an existing Ingress, or an HTTPRoute),
//! built by pure functions, and the self-check that fetches each file the way a CA does — over
//! HTTP, following the redirects the Baseline Requirements allow, comparing bytes exactly — and
//! says what is wrong when it does not match.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::{HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::dns::DnsChecker;
use crate::api::{
    Challenge, GatewayRef, IngressPathType, MANAGED_BY_LABEL, MANAGER, ORDER_ANNOTATION, ORDER_LABEL, ValidationMethod,
    order_label_value,
};

/// Where CAs look for validation files.
pub const WELL_KNOWN: &str = "/.well-known/pki-validation/";
/// The port the solver listens on inside its Pod (non-root: above 1024).
pub const SOLVER_PORT: i32 = 8089;
/// Label naming the solver a Pod belongs to; the Service selects on it.
pub const SOLVER_LABEL: &str = "certorder.io/solver";
/// Where the ConfigMap is mounted in the solver Pod.
pub const SOLVER_DIR: &str = "/var/run/certorder/pki-validation";
/// Bytes of the body kept for the diagnosis.
pub const FIRST_BYTES: usize = 64;
/// Largest body read; a validation file is a few dozen bytes.
const MAX_BODY: usize = 64 * 1024;

/// One file to serve: `http://<domain>/.well-known/pki-validation/<file>` answers `content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChallenge {
    pub domain: String,
    pub file: String,
    pub content: String,
}

impl FileChallenge {
    pub fn path(&self) -> String {
        format!("{WELL_KNOWN}{}", self.file)
    }
}

/// A file name a vendor may give: letters, digits, `.`, `_`, `-`; not starting with a dot.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A host name as it may appear in a key: lowercase letters, digits, `.`, `-`.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

/// The ConfigMap key (and, mounted, the file name in the solver's directory) of one domain's file.
/// Host names cannot contain `_`, so the key splits back unambiguously.
pub fn config_map_key(domain: &str, file: &str) -> String {
    format!("{domain}_{file}")
}

/// Splits `http://host/.well-known/pki-validation/file` into host and file name.
pub fn parse_target(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} is not a plain http:// URL"))?;
    let (host, path) = rest.split_once('/').ok_or_else(|| format!("{url:?} has no path"))?;
    let file = format!("/{path}");
    let file = file.strip_prefix(WELL_KNOWN).ok_or_else(|| format!("{url:?} is not under {WELL_KNOWN}"))?;
    if !valid_host(host) {
        return Err(format!("{url:?}: {host:?} is not a host name"));
    }
    if !valid_file_name(file) {
        return Err(format!("{url:?}: {file:?} is not a file name certorder can serve"));
    }
    Ok((host.to_string(), file.to_string()))
}

/// The files the HTTP challenges ask for.
pub fn file_challenges(challenges: &[Challenge]) -> Result<Vec<FileChallenge>, String> {
    challenges
        .iter()
        .filter(|c| c.method == ValidationMethod::HTTP)
        .map(|c| {
            let (host, file) = parse_target(&c.target)?;
            Ok(FileChallenge { domain: host, file, content: c.expected_value.clone() })
        })
        .collect()
}

/// The order that owns the published objects.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// Name of every object published for an order (ConfigMap, Pod, Service, Ingress, HTTPRoute): a
/// DNS-1035 label of at most 63 characters, unique per order name.
pub fn solver_name(order: &str) -> String {
    let name = format!("certorder-solver-{order}");
    if name.len() <= 63 && !name.contains('.') {
        return name;
    }
    let hash = hex::encode(&Sha256::digest(order.as_bytes())[..4]);
    let stem: String = order.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(36).collect();
    format!("certorder-solver-{}-{hash}", stem.trim_end_matches('-'))
}

/// Labels of every published object.
pub fn labels(owner: &Owner) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (ORDER_LABEL.to_string(), order_label_value(owner.name)),
        (SOLVER_LABEL.to_string(), solver_name(owner.name)),
    ])
}

fn owner_reference(owner: &Owner) -> OwnerReference {
    OwnerReference {
        api_version: "certorder.io/v1alpha1".into(),
        kind: "CertificateOrder".into(),
        name: owner.name.into(),
        uid: owner.uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn metadata(owner: &Owner, mut annotations: Value) -> Value {
    annotations[ORDER_ANNOTATION] = json!(owner.name);
    json!({
        "name": solver_name(owner.name),
        "namespace": owner.namespace,
        "labels": labels(owner),
        "annotations": annotations,
        "ownerReferences": [owner_reference(owner)],
    })
}

/// The ConfigMap with one key per domain (see [`config_map_key`]) holding the exact content.
pub fn config_map(owner: &Owner, files: &[FileChallenge]) -> ConfigMap {
    let data: BTreeMap<String, String> =
        files.iter().map(|f| (config_map_key(&f.domain, &f.file), f.content.clone())).collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, json!({})),
        "data": data,
    }))
    .expect("a ConfigMap from a literal")
}

/// What HTTP validation takes from the cluster admin (flags, chart, provider): the image solver
/// Pods run and the Secrets they pull it with (never the order's choice), and the Ingress path
/// type of orders that set none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpDefaults {
    pub image: String,
    pub pull_secrets: Vec<String>,
    pub path_type: IngressPathType,
}

/// The solver Pod: `image` runs `certorder solver`, pulled with `pull_secrets` (Secrets of the
/// order's namespace). Both come from the cluster admin (flags, chart, provider), never the order.
pub fn solver_pod(owner: &Owner, image: &str, pull_secrets: &[String]) -> Pod {
    let pull: Vec<serde_json::Value> = pull_secrets.iter().map(|name| json!({"name": name})).collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(owner, json!({})),
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "restartPolicy": "Always",
            "imagePullSecrets": pull,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "solver",
                "image": image,
                "args": ["solver", "--dir", SOLVER_DIR, "--listen", format!("0.0.0.0:{SOLVER_PORT}")],
                "ports": [{"name": "http", "containerPort": SOLVER_PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": SOLVER_PORT}, "periodSeconds": 5},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "securityContext": {
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "runAsNonRoot": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "files", "mountPath": SOLVER_DIR, "readOnly": true}],
            }],
            "volumes": [{"name": "files", "configMap": {"name": solver_name(owner.name)}}],
        },
    }))
    .expect("a Pod from a literal")
}

/// The Service in front of the solver Pod.
pub fn solver_service(owner: &Owner) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, json!({})),
        "spec": {
            "type": "ClusterIP",
            "selector": {SOLVER_LABEL: solver_name(owner.name)},
            "ports": [{"name": "http", "port": SOLVER_PORT, "targetPort": SOLVER_PORT, "protocol": "TCP"}],
        },
    }))
    .expect("a Service from a literal")
}

fn solver_path(file: &FileChallenge, service: &str, path_type: IngressPathType) -> HTTPIngressPath {
    serde_json::from_value(json!({
        "path": file.path(),
        "pathType": path_type.as_str(),
        "backend": {"service": {"name": service, "port": {"number": SOLVER_PORT}}},
    }))
    .expect("an Ingress path from a literal")
}

/// The Ingress: one rule per domain, the file's path to the solver's Service, with `path_type`
/// (`ImplementationSpecific` by default: ingress-nginx ≥ 1.12 refuses `Exact` and `Prefix` paths
/// with a dot, GCE accepts only `ImplementationSpecific`). It turns the ingress-nginx HTTPS
/// redirect off for these paths.
pub fn ingress(owner: &Owner, class: Option<&str>, files: &[FileChallenge], path_type: IngressPathType) -> Ingress {
    let service = solver_name(owner.name);
    let rules: Vec<IngressRule> = files
        .iter()
        .map(|f| IngressRule {
            host: Some(f.domain.clone()),
            http: Some(HTTPIngressRuleValue { paths: vec![solver_path(f, &service, path_type)] }),
        })
        .collect();
    let annotations = json!({
        "nginx.ingress.kubernetes.io/ssl-redirect": "false",
        "nginx.ingress.kubernetes.io/force-ssl-redirect": "false",
    });
    let mut spec = json!({"rules": rules});
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(owner, annotations),
        "spec": spec,
    }))
    .expect("an Ingress from a literal")
}

/// The HTTPRoute (Gateway API v1) attached to `gateway`: the domains as hostnames, each file's
/// exact path to the solver's Service.
pub fn http_route(owner: &Owner, gateway: &GatewayRef, files: &[FileChallenge]) -> Value {
    let mut parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name});
    if let Some(ns) = &gateway.namespace {
        parent["namespace"] = json!(ns);
    }
    if let Some(section) = &gateway.section_name {
        parent["sectionName"] = json!(section);
    }
    let mut hostnames: Vec<&str> = files.iter().map(|f| f.domain.as_str()).collect();
    hostnames.sort();
    hostnames.dedup();
    let mut paths: Vec<String> = files.iter().map(FileChallenge::path).collect();
    paths.sort();
    paths.dedup();
    let matches: Vec<Value> = paths.iter().map(|p| json!({"path": {"type": "Exact", "value": p}})).collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(owner, json!({})),
        "spec": {
            "parentRefs": [parent],
            "hostnames": hostnames,
            "rules": [{
                "matches": matches,
                "backendRefs": [{"name": solver_name(owner.name), "port": SOLVER_PORT}],
            }],
        },
    })
}

fn is_solver_path(path: &HTTPIngressPath, service: &str) -> bool {
    path.backend.service.as_ref().is_some_and(|s| s.name == service)
}

/// The user's Ingress with the files' paths added (a rule per domain that has none, the path first
/// in the domain's rule otherwise); `None` when every path is already there.
pub fn add_paths(
    existing: &Ingress,
    owner: &Owner,
    files: &[FileChallenge],
    path_type: IngressPathType,
) -> Option<Ingress> {
    let service = solver_name(owner.name);
    let mut ingress = existing.clone();
    let spec = ingress.spec.get_or_insert_with(Default::default);
    let rules = spec.rules.get_or_insert_with(Vec::new);
    let mut changed = false;
    for file in files {
        let wanted = solver_path(file, &service, path_type);
        match rules.iter_mut().find(|r| r.host.as_deref() == Some(file.domain.as_str())) {
            Some(rule) => {
                let http = rule.http.get_or_insert_with(Default::default);
                if !http.paths.contains(&wanted) {
                    http.paths.retain(|p| !(is_solver_path(p, &service) && p.path == wanted.path));
                    http.paths.insert(0, wanted);
                    changed = true;
                }
            }
            None => {
                rules.push(IngressRule {
                    host: Some(file.domain.clone()),
                    http: Some(HTTPIngressRuleValue { paths: vec![wanted] }),
                });
                changed = true;
            }
        }
    }
    changed.then_some(ingress)
}

/// The user's Ingress without the paths to this order's solver (and without rules left empty by
/// their removal); `None` when there is nothing to remove.
pub fn remove_paths(existing: &Ingress, owner: &Owner) -> Option<Ingress> {
    let service = solver_name(owner.name);
    let mut ingress = existing.clone();
    let rules = ingress.spec.as_mut()?.rules.as_mut()?;
    let mut changed = false;
    rules.retain_mut(|rule| {
        let Some(http) = rule.http.as_mut() else {
            return true;
        };
        let before = http.paths.len();
        http.paths.retain(|p| !is_solver_path(p, &service));
        if http.paths.len() != before {
            changed = true;
            return !http.paths.is_empty();
        }
        true
    });
    changed.then_some(ingress)
}

/// What the self-check saw when it fetched a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpObservation {
    pub passed: bool,
    /// The address asked (`ip:port`), when the name resolved.
    pub server: Option<String>,
    pub status_code: Option<u16>,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    pub content_length: Option<u64>,
    /// The first bytes of the body, escaped so that newlines and control bytes show.
    pub first_bytes: String,
    /// What is wrong, in words a person can act on; empty when passed.
    pub diagnosis: String,
}

impl HttpObservation {
    fn failure(server: Option<String>, diagnosis: String) -> HttpObservation {
        HttpObservation {
            passed: false,
            server,
            status_code: None,
            location: None,
            content_length: None,
            first_bytes: String::new(),
            diagnosis,
        }
    }
}

/// Fetches validation files as a CA does (Baseline Requirements 3.2.2.4.18): resolves the name
/// (A records through the configured name servers), one GET of `http://<domain>/…`, and follows
/// 301, 302, 307 and 308 redirects to `http` or `https` URLs on ports 80 and 443, at most
/// [`MAX_REDIRECTS`] of them. Over HTTPS the server's certificate is not checked: a CA fetches
/// the file to issue a certificate the name may not have yet (RFC 8555 8.3 says the same of
/// ACME). The body is compared byte for byte.
pub struct HttpChecker {
    dns: Arc<DnsChecker>,
    ports: Ports,
    timeout: Duration,
    user_agent: &'static str,
}

/// The ports connected to for `http` and `https` URLs: 80 and 443 in real life; tests point
/// them at an emulated ingress controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

/// Most redirects followed, as Let's Encrypt's validation does.
pub const MAX_REDIRECTS: usize = 10;

/// The `User-Agent` of the operator's self-check.
pub const SELF_CHECK_AGENT: &str = "certorder-self-check";

impl HttpChecker {
    pub fn new(dns: Arc<DnsChecker>, ports: Ports) -> HttpChecker {
        HttpChecker { dns, ports, timeout: Duration::from_secs(10), user_agent: SELF_CHECK_AGENT }
    }

    /// The same checker, introducing itself as `user_agent` (the local CA's own fetches).
    pub fn with_user_agent(&self, user_agent: &'static str) -> HttpChecker {
        HttpChecker { dns: self.dns.clone(), ports: self.ports, timeout: self.timeout, user_agent }
    }

    /// Fetches `url`, following redirects as a CA does, and compares the body with `expected`,
    /// byte for byte.
    pub async fn check(&self, url: &str, expected: &str) -> HttpObservation {
        let (host, file) = match parse_target(url) {
            Ok(t) => t,
            Err(e) => return HttpObservation::failure(None, e),
        };
        let Ok(mut target) = url::Url::parse(&format!("http://{host}{WELL_KNOWN}{file}")) else {
            return HttpObservation::failure(None, format!("{url:?} is not a URL"));
        };
        let mut followed = 0;
        // Where the domain points decides where redirects may lead: a public name cannot send
        // the operator (which runs inside the cluster) to a private address the CA never reaches.
        let mut public_only = false;
        loop {
            let (addr, answer) = match self.fetch(&target, public_only).await {
                Ok(fetched) => fetched,
                Err(mut failure) => {
                    if followed > 0 {
                        failure.diagnosis = format!("after {followed} redirect(s), at {target}: {}", failure.diagnosis);
                        failure.location = Some(target.to_string());
                    }
                    return failure;
                }
            };
            if followed == 0 {
                public_only = is_public(addr.ip());
            }
            let next = match (&answer.location, FOLLOWED_REDIRECTS.contains(&answer.status)) {
                (Some(location), true) => Some(follow(&target, location)),
                _ => None,
            };
            let diagnosis = match next {
                Some(Ok(next)) if followed < MAX_REDIRECTS => {
                    target = next;
                    followed += 1;
                    continue;
                }
                Some(Ok(next)) => format!(
                    "more than {MAX_REDIRECTS} redirects (the last to {next}): the CA gives up; serve the file with fewer"
                ),
                Some(Err(refused)) => refused,
                None if followed > 0 => match diagnose(expected, &answer) {
                    d if d.is_empty() => d,
                    d => format!("after {followed} redirect(s), at {target}: {d}"),
                },
                None => diagnose(expected, &answer),
            };
            let location = if followed > 0 && answer.location.is_none() {
                Some(target.to_string())
            } else {
                answer.location.clone()
            };
            return HttpObservation {
                passed: diagnosis.is_empty(),
                server: Some(addr.to_string()),
                status_code: Some(answer.status),
                location,
                content_length: Some(answer.total_len),
                first_bytes: first_bytes(&answer.body),
                diagnosis,
            };
        }
    }

    /// One GET of `url`: resolved, connected (TLS for `https`), answered. With `public_only`, a name
    /// that resolves to an address that is not public is not fetched.
    async fn fetch(&self, url: &url::Url, public_only: bool) -> Result<(SocketAddr, Answer), HttpObservation> {
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let tls = url.scheme() == "https";
        let port = if tls { self.ports.https } else { self.ports.http };
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.dns.resolve_host(&host).await.map_err(|e| {
                HttpObservation::failure(
                    None,
                    format!("name does not resolve: {host}: {e}; point it at the ingress controller's address"),
                )
            })?,
        };
        let addr = SocketAddr::new(ips[0], port);
        if public_only && !is_public(addr.ip()) {
            return Err(HttpObservation::failure(
                None,
                format!(
                    "redirected to {url}, whose address {} is not a public one: the CA cannot reach it, and certorder does not fetch it",
                    addr.ip()
                ),
            ));
        }
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let fetched = fetch(addr, tls.then_some(host.as_str()), &host_header, &path, self.user_agent);
        match tokio::time::timeout(self.timeout, fetched).await {
            Err(_) => Err(HttpObservation::failure(
                Some(addr.to_string()),
                format!("connection timed out: no answer from {addr} within {:?}", self.timeout),
            )),
            Ok(Err(FetchError::Refused)) => Err(HttpObservation::failure(
                Some(addr.to_string()),
                format!(
                    "connection refused at {addr}: nothing listens on port {port} where {host} points; is it the ingress controller's address?"
                ),
            )),
            Ok(Err(FetchError::Other(e))) => {
                Err(HttpObservation::failure(Some(addr.to_string()), format!("cannot fetch {url} from {addr}: {e}")))
            }
            Ok(Ok(answer)) => Ok((addr, answer)),
        }
    }
}

/// Whether `ip` is reachable from the internet: not private, loopback, link-local, shared
/// (100.64/10), documentation, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
                    || first == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// The redirects a CA follows (Baseline Requirements 3.2.2.4.18: RFC 7231 6.4 and RFC 7538 3).
pub const FOLLOWED_REDIRECTS: [u16; 4] = [301, 302, 307, 308];

/// Where a redirect from `from` to `location` leads, if a CA follows it: an `http` or `https`
/// URL on port 80 or 443 (the Authorized Ports for those schemes).
pub fn follow(from: &url::Url, location: &str) -> Result<url::Url, String> {
    let next = from
        .join(location.trim())
        .map_err(|e| format!("redirected to {location:?}, which is not a URL ({e}): the CA cannot follow it"))?;
    match (next.scheme(), next.port()) {
        ("http", None | Some(80)) | ("https", None | Some(443)) => Ok(next),
        ("http" | "https", Some(port)) => Err(format!(
            "redirected to {next}, on port {port}: the CA follows redirects only to port 80 (http) or 443 (https); redirect without a port, or serve the file directly"
        )),
        (scheme, _) => Err(format!(
            "redirected to {next}: the CA follows redirects only to http:// and https:// URLs, not {scheme}:"
        )),
    }
}

/// One HTTP answer, as far as the check needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    /// The body, up to 64 KiB.
    pub body: Vec<u8>,
    /// The body's full length.
    pub total_len: u64,
}

enum FetchError {
    Refused,
    Other(String),
}

/// One GET to `addr`, over TLS when `tls_name` (the name sent by SNI) is given.
async fn fetch(
    addr: SocketAddr,
    tls_name: Option<&str>,
    host: &str,
    path: &str,
    user_agent: &str,
) -> Result<Answer, FetchError> {
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(FetchError::Refused);
        }
        Err(e) => return Err(FetchError::Other(e.to_string())),
    };
    match tls_name {
        None => exchange(stream, host, path, user_agent).await,
        Some(name) => {
            let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
                .map_err(|e| FetchError::Other(format!("{name:?} cannot be sent as a TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(any_certificate())
                .connect(server_name, stream)
                .await
                .map_err(|e| FetchError::Other(format!("the TLS handshake failed: {e}")))?;
            exchange(stream, host, path, user_agent).await
        }
    }
}

/// A TLS client that takes any server certificate, as a CA fetching a validation file over HTTPS
/// does.
fn any_certificate() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signatures), so the answer comes from the server that was reached.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn exchange<IO>(io: IO, host: &str, path: &str, user_agent: &str) -> Result<Answer, FetchError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| FetchError::Other(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, user_agent)
        .header(http::header::ACCEPT, "*/*")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| FetchError::Other(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| FetchError::Other(e.to_string()));
    let result = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let header = |name: http::header::HeaderName| {
                response.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let location = header(http::header::LOCATION);
            let content_type = header(http::header::CONTENT_TYPE);
            let mut body = response.into_body();
            let mut kept = Vec::new();
            let mut total = 0u64;
            let mut error = None;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            total += data.len() as u64;
                            let room = MAX_BODY.saturating_sub(kept.len());
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                            if total > MAX_BODY as u64 {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            match error {
                Some(e) => Err(FetchError::Other(format!("the body broke off: {e}"))),
                None => Ok(Answer { status, location, content_type, body: kept, total_len: total }),
            }
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// The first bytes of a body, with newlines and control bytes escaped (`\n`, `\r`, `\x00`).
pub fn first_bytes(body: &[u8]) -> String {
    let head = &body[..body.len().min(FIRST_BYTES)];
    let text: String = head.escape_ascii().to_string();
    if body.len() > FIRST_BYTES { format!("{text}…") } else { text }
}

fn looks_like_html(answer: &Answer) -> bool {
    let typed = answer.content_type.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("html"));
    let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(512)]).trim_start().to_ascii_lowercase();
    typed || text.starts_with("<!doctype") || text.starts_with("<html") || text.starts_with('<')
}

/// What is wrong with an answer to a validation fetch, for a person; empty when the CA would
/// accept it (a 200 whose body is exactly `expected`).
pub fn diagnose(expected: &str, answer: &Answer) -> String {
    let expected = expected.as_bytes();
    if (300..400).contains(&answer.status) {
        return match &answer.location {
            Some(to) if !FOLLOWED_REDIRECTS.contains(&answer.status) => format!(
                "redirected with {} to {to}: the CA follows only 301, 302, 307 and 308 redirects",
                answer.status
            ),
            Some(to) => format!("redirected ({} to {to})", answer.status),
            None => format!("answered {} without a Location: the CA has nowhere to go", answer.status),
        };
    }
    if answer.status == 200 && answer.body == expected {
        return String::new();
    }
    if matches!(answer.status, 502..=504) {
        return format!(
            "no ready backend behind the route ({}): is the solver Pod running and its Service ready?",
            answer.status
        );
    }
    if looks_like_html(answer) {
        return format!(
            "served by another backend (got HTML, status {}): the request for this host and path does not reach the solver; check which Ingress or route serves the host",
            answer.status
        );
    }
    if answer.status != 200 {
        return format!("answered {} instead of 200 with the file", answer.status);
    }
    let body = answer.body.as_slice();
    if let Some(stripped) = body.strip_prefix(expected)
        && !stripped.is_empty()
        && stripped.iter().all(|b| matches!(b, b'\n' | b'\r'))
    {
        return "content has a trailing newline: the file must hold exactly the value, with no newline or carriage return at the end".into();
    }
    if body.trim_ascii() == expected {
        return "content has surrounding whitespace: the file must hold exactly the value".into();
    }
    if body.is_empty() {
        return "the file is empty".into();
    }
    "content differs from the expected value".into()
}

#[cfg(test)]
mod tests;
