//! What a cluster does with certorder's HTTP validation objects, in miniature: a kubelet that runs
//! the real `certorder solver` binary for every solver Pod (its ConfigMap volume written as files,
//! as the kubelet mounts them), Services that map to those processes, and an ingress controller
//! whose front door on loopback routes requests by Host and path according to the Ingress and
//! HTTPRoute objects in the testbed.
//!
//! The front door behaves like ingress-nginx where it matters to a CA: `Exact` paths win over
//! `Prefix` ones, the longest prefix wins, plain HTTP to a path of an Ingress that has TLS for
//! the host (`spec.tls`, unless annotated `nginx.ingress.kubernetes.io/ssl-redirect: "false"`) or
//! is annotated `nginx.ingress.kubernetes.io/force-ssl-redirect: "true"` answers 308 to
//! `https://`, the same routes are served over HTTPS (a self-signed certificate, as ingress-nginx's
//! fake one), and a request no rule matches gets the default backend's HTML 404. Tests make names
//! resolve to it with [`crate::dns::TestDns::set_a`] to 127.0.0.1, and give the operator
//! [`Cluster::port`] and [`Cluster::https_port`].
//!
//! ```no_run
//! # async fn demo(api: &testbed::ApiServer) -> anyhow::Result<()> {
//! let cluster = testbed::cluster::Cluster::start(api.client(), "/path/to/certorder").await?;
//! println!("front door on {}", cluster.addr());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Annotation that makes the emulated ingress controller redirect every path of an Ingress to
/// HTTPS, as ingress-nginx does.
pub const FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";
/// Annotation that turns off the HTTPS redirect ingress-nginx makes for Ingresses with TLS.
pub const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
/// The ingress class the front door serves (Ingresses without a class are served too).
pub const INGRESS_CLASS: &str = "nginx";
/// How often the emulation looks at the API server.
const TICK: Duration = Duration::from_millis(100);

/// A fixed answer for a Service no Pod backs (a user's website, say).
#[derive(Clone, Debug)]
pub struct StaticBackend {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// A `Location` header (a redirect).
    pub location: Option<String>,
}

impl StaticBackend {
    pub fn html(body: &str) -> StaticBackend {
        StaticBackend {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: body.as_bytes().to_vec(),
            location: None,
        }
    }
    pub fn text(body: &[u8]) -> StaticBackend {
        StaticBackend { status: 200, content_type: "text/plain".into(), body: body.to_vec(), location: None }
    }
    /// A site that answers every request with a redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> StaticBackend {
        StaticBackend { location: Some(location.into()), status, ..StaticBackend::html("<html>moved</html>") }
    }
}

/// One request the front door answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub host: String,
    pub path: String,
    pub user_agent: String,
    pub status: u16,
    /// `namespace/service` it went to, or `redirect`, or `default-backend`.
    pub backend: String,
    /// It came to the HTTPS port.
    pub https: bool,
}

/// A route of the front door.
#[derive(Clone, Debug)]
struct Route {
    host: Option<String>,
    path: String,
    exact: bool,
    namespace: String,
    service: String,
    port: i32,
    redirect: bool,
}

struct Solver {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    labels: BTreeMap<String, String>,
    config_map: Option<String>,
}

/// `(namespace, name)` of an object.
type Key = (String, String);
/// A Service: its selector, and its ports (port → targetPort).
type ServiceView = (BTreeMap<String, String>, BTreeMap<i32, i32>);

#[derive(Default)]
struct Inner {
    routes: Vec<Route>,
    /// (namespace, service) → (selector, port → targetPort)
    services: HashMap<Key, ServiceView>,
    statics: HashMap<(String, String), StaticBackend>,
    /// (namespace, pod) → the running solver
    solvers: HashMap<(String, String), Solver>,
    served: Vec<Served>,
    solver_starts: usize,
}

type Shared = Arc<Mutex<Inner>>;

/// The running emulation. Dropping it stops the front door and kills the solver processes.
pub struct Cluster {
    addr: SocketAddr,
    https_addr: SocketAddr,
    state: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Child processes are started with kill_on_drop.
        self.state.lock().expect("cluster state").solvers.clear();
    }
}

impl Cluster {
    /// Starts the emulation against the API server `client` talks to; `solver_binary` is the
    /// `certorder` binary (`env!("CARGO_BIN_EXE_certorder")` in certorder's tests).
    pub async fn start(client: Client, solver_binary: impl Into<PathBuf>) -> anyhow::Result<Cluster> {
        let state: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback(front_door).with_state(state.clone());
        let plain = app.clone().layer(axum::Extension(Scheme::Http));
        let door = tokio::spawn(async move {
            let _ = axum::serve(listener, plain).await;
        });
        let https_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let https_addr = https_listener.local_addr()?;
        let secure_door = tokio::spawn(serve_tls(https_listener, app.layer(axum::Extension(Scheme::Https))));
        let binary = solver_binary.into();
        let kubelet_state = state.clone();
        let kubelet = tokio::spawn(async move {
            loop {
                if let Err(e) = sync(&client, &binary, &kubelet_state).await {
                    tracing::debug!(error = %e, "cluster emulation could not sync");
                }
                tokio::time::sleep(TICK).await;
            }
        });
        Ok(Cluster { addr, https_addr, state, tasks: vec![door, secure_door, kubelet] })
    }

    /// The front door (what the ingress controller's address would be).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The front door's HTTPS port (443 of the ingress controller's address).
    pub fn https_port(&self) -> u16 {
        self.https_addr.port()
    }

    /// Makes `namespace/service` answer with `backend` (a Service no solver Pod backs).
    pub fn serve_static(&self, namespace: &str, service: &str, backend: StaticBackend) {
        self.state.lock().expect("cluster state").statics.insert((namespace.into(), service.into()), backend);
    }

    /// Every request the front door answered, oldest first.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().expect("cluster state").served.clone()
    }

    /// Whether the front door has a route for `host` (the emulation has seen its Ingress).
    pub fn routes_host(&self, host: &str) -> bool {
        self.state.lock().expect("cluster state").routes.iter().any(|r| r.host.as_deref() == Some(host))
    }

    /// Solver processes running now.
    pub fn running_solvers(&self) -> usize {
        self.state.lock().expect("cluster state").solvers.len()
    }

    /// Solver processes started so far.
    pub fn solver_starts(&self) -> usize {
        self.state.lock().expect("cluster state").solver_starts
    }
}

fn is_solver(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let container = spec.containers.first()?;
    if container.args.as_ref()?.first().map(String::as_str) != Some("solver") {
        return None;
    }
    let cm = spec.volumes.as_ref()?.iter().find_map(|v| v.config_map.as_ref().map(|c| c.name.clone()));
    Some(cm.unwrap_or_default())
}

/// Writes the ConfigMap's keys as files (bytes exactly), removing keys that went away.
fn materialise(dir: &Path, config_map: Option<&ConfigMap>) {
    let data: BTreeMap<String, String> = config_map.and_then(|c| c.data.clone()).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !data.contains_key(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for (key, value) in data {
        let path = dir.join(&key);
        if std::fs::read(&path).ok().as_deref() != Some(value.as_bytes()) {
            let _ = std::fs::write(&path, value.as_bytes());
        }
    }
}

async fn start_solver(binary: &Path, dir: &Path) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(binary)
        .args(["solver", "--dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| anyhow::anyhow!("the solver did not say where it listens"))??
        .ok_or_else(|| anyhow::anyhow!("the solver exited"))?;
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("unexpected solver output {line:?}"))?
        .parse()?;
    Ok((child, addr))
}

fn http_route_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "httproutes"))
}

/// One look at the API server: start and stop solvers, refresh files, services and routes.
async fn sync(client: &Client, binary: &Path, state: &Shared) -> anyhow::Result<()> {
    let lp = ListParams::default();
    let pods = Api::<Pod>::all(client.clone()).list(&lp).await?.items;
    let config_maps = Api::<ConfigMap>::all(client.clone()).list(&lp).await?.items;
    let services = Api::<Service>::all(client.clone()).list(&lp).await?.items;
    let ingresses = Api::<Ingress>::all(client.clone()).list(&lp).await?.items;
    // The Gateway API is optional: without its CRD there are no HTTPRoutes.
    let routes = http_route_api(client).list(&lp).await.map(|l| l.items).unwrap_or_default();
    let cm_of = |ns: &str, name: &str| {
        config_maps.iter().find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == name)
    };

    // Kubelet: solver Pods.
    let wanted: Vec<(Key, String, BTreeMap<String, String>)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some(((p.namespace()?, p.name_any()), is_solver(p)?, p.labels().clone())))
        .collect();
    let to_start: Vec<_> = {
        let mut s = state.lock().expect("cluster state");
        s.solvers.retain(|key, _| wanted.iter().any(|(k, _, _)| k == key));
        wanted.iter().filter(|(k, _, _)| !s.solvers.contains_key(k)).cloned().collect()
    };
    for ((ns, name), cm, labels) in to_start {
        let dir = tempfile::tempdir()?;
        materialise(dir.path(), cm_of(&ns, &cm));
        let (child, addr) = start_solver(binary, dir.path()).await?;
        let mut s = state.lock().expect("cluster state");
        s.solver_starts += 1;
        s.solvers.insert((ns, name), Solver { child, addr, dir, labels, config_map: Some(cm) });
    }
    let mut s = state.lock().expect("cluster state");
    for ((ns, _), solver) in s.solvers.iter_mut() {
        if let Some(cm) = &solver.config_map {
            materialise(solver.dir.path(), cm_of(ns, cm));
        }
        let _ = solver.child.try_wait();
    }

    // Services.
    s.services = services
        .iter()
        .filter_map(|svc| {
            let spec = svc.spec.as_ref()?;
            let ports = spec
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    let target = match &p.target_port {
                        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(t)) => *t,
                        _ => p.port,
                    };
                    (p.port, target)
                })
                .collect();
            Some(((svc.namespace()?, svc.name_any()), (spec.selector.clone().unwrap_or_default(), ports)))
        })
        .collect();

    // Ingress controller: Ingresses of our class (or none) and HTTPRoutes. Like ingress-nginx, a
    // host has TLS when any Ingress of the class has a certificate for it, and then every location
    // of that host redirects plain HTTP unless its own Ingress turns ssl-redirect off.
    let ours = |ing: &&Ingress| {
        ing.spec.as_ref().is_some_and(|s| s.ingress_class_name.as_deref().is_none_or(|c| c == INGRESS_CLASS))
    };
    let tls_hosts: std::collections::BTreeSet<String> = ingresses
        .iter()
        .filter(ours)
        .flat_map(|ing| ing.spec.iter().flat_map(|s| s.tls.iter().flatten()))
        .flat_map(|t| t.hosts.iter().flatten().cloned())
        .collect();
    let mut table = Vec::new();
    for ing in &ingresses {
        let Some(spec) = &ing.spec else { continue };
        if spec.ingress_class_name.as_deref().is_some_and(|c| c != INGRESS_CLASS) {
            continue;
        }
        let annotation = |name: &str| ing.annotations().get(name).map(String::as_str);
        let forced = annotation(FORCE_SSL_REDIRECT) == Some("true");
        let ns = ing.namespace().unwrap_or_default();
        for rule in spec.rules.iter().flatten() {
            // ingress-nginx redirects plain HTTP for hosts with TLS (ssl-redirect defaults to
            // true), and for every host when forced.
            let has_tls = rule.host.as_ref().is_some_and(|h| tls_hosts.contains(h));
            let redirect = forced || (has_tls && annotation(SSL_REDIRECT) != Some("false"));
            for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let Some(backend) = &path.backend.service else {
                    continue;
                };
                let port = backend.port.as_ref().and_then(|p| p.number).unwrap_or(80);
                table.push(Route {
                    host: rule.host.clone(),
                    path: path.path.clone().unwrap_or_else(|| "/".into()),
                    exact: path.path_type == "Exact",
                    namespace: ns.clone(),
                    service: backend.name.clone(),
                    port,
                    redirect,
                });
            }
        }
    }
    for route in &routes {
        let ns = route.namespace().unwrap_or_default();
        let spec = &route.data["spec"];
        let hosts: Vec<Option<String>> = match spec["hostnames"].as_array() {
            Some(h) if !h.is_empty() => h.iter().map(|v| v.as_str().map(String::from)).collect(),
            _ => vec![None],
        };
        for rule in spec["rules"].as_array().into_iter().flatten() {
            let Some(backend) = rule["backendRefs"].get(0) else {
                continue;
            };
            let service = backend["name"].as_str().unwrap_or_default().to_string();
            let port = backend["port"].as_i64().unwrap_or(80) as i32;
            let matches = rule["matches"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}})]);
            for m in matches {
                let path = m["path"]["value"].as_str().unwrap_or("/").to_string();
                let exact = m["path"]["type"].as_str() == Some("Exact");
                for host in &hosts {
                    table.push(Route {
                        host: host.clone(),
                        path: path.clone(),
                        exact,
                        namespace: ns.clone(),
                        service: service.clone(),
                        port,
                        redirect: false,
                    });
                }
            }
        }
    }
    s.routes = table;
    Ok(())
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The route for a request: Exact first, then the longest Prefix; a rule for the host before a
/// rule for any host.
fn find_route<'a>(routes: &'a [Route], host: &str, path: &str) -> Option<&'a Route> {
    let for_host = |r: &&Route| r.host.as_deref().is_none_or(|h| h == host);
    let exact = routes.iter().filter(for_host).filter(|r| r.exact && r.path == path).max_by_key(|r| r.host.is_some());
    exact.or_else(|| {
        routes
            .iter()
            .filter(for_host)
            .filter(|r| !r.exact && prefix_matches(&r.path, path))
            .max_by_key(|r| (r.host.is_some(), r.path.len()))
    })
}

const DEFAULT_BACKEND: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Whether a request came to the plain or the TLS port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// Serves `app` over TLS with a self-signed certificate (ingress-nginx's "fake certificate"
/// for hosts without their own): a CA following a redirect to HTTPS does not check it.
async fn serve_tls(listener: tokio::net::TcpListener, app: axum::Router) {
    let Ok(acceptor) = self_signed_acceptor() else { return };
    while let Ok((stream, _)) = listener.accept().await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn self_signed_acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["ingress.local".to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn front_door(
    State(state): State<Shared>,
    axum::Extension(scheme): axum::Extension<Scheme>,
    request: Request,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h).to_ascii_lowercase())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let user_agent =
        request.headers().get(header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
    enum Target {
        Redirect,
        Static(StaticBackend),
        Solver(SocketAddr),
        NoEndpoints,
        Default,
    }
    let (target, backend) = {
        let s = state.lock().expect("cluster state");
        match find_route(&s.routes, &host, &path) {
            None => (Target::Default, "default-backend".to_string()),
            Some(r) if r.redirect && scheme == Scheme::Http => (Target::Redirect, "redirect".into()),
            Some(r) => {
                let key = (r.namespace.clone(), r.service.clone());
                let name = format!("{}/{}", r.namespace, r.service);
                if let Some(b) = s.statics.get(&key) {
                    (Target::Static(b.clone()), name)
                } else {
                    let endpoint = s.services.get(&key).filter(|(_, ports)| ports.contains_key(&r.port)).and_then(
                        |(selector, _)| {
                            s.solvers
                                .iter()
                                .find(|((ns, _), solver)| {
                                    *ns == r.namespace
                                        && !selector.is_empty()
                                        && selector.iter().all(|(k, v)| solver.labels.get(k) == Some(v))
                                })
                                .map(|(_, solver)| solver.addr)
                        },
                    );
                    (endpoint.map(Target::Solver).unwrap_or(Target::NoEndpoints), name)
                }
            }
        }
    };
    let response = match target {
        Target::Default => html(StatusCode::NOT_FOUND, DEFAULT_BACKEND.into()),
        Target::NoEndpoints => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>".into(),
        ),
        Target::Redirect => {
            (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, format!("https://{host}{path}"))], html_body())
                .into_response()
        }
        Target::Static(b) => {
            let mut response = Response::builder().status(b.status).header(header::CONTENT_TYPE, b.content_type);
            if let Some(location) = b.location {
                response = response.header(header::LOCATION, location);
            }
            response.body(Body::from(b.body)).expect("a static response")
        }
        Target::Solver(addr) => proxy(addr, &host, &path).await,
    };
    state.lock().expect("cluster state").served.push(Served {
        host,
        path,
        user_agent,
        status: response.status().as_u16(),
        backend,
        https: scheme == Scheme::Https,
    });
    response
}

fn html_body() -> &'static str {
    "<html><head><title>308 Permanent Redirect</title></head><body>308 Permanent Redirect</body></html>"
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Forwards a GET to a solver and returns its answer as it came.
async fn proxy(addr: SocketAddr, host: &str, path: &str) -> Response {
    let result = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let request = http::Request::get(path)
            .header(header::HOST, host)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        driver.abort();
        anyhow::Ok(Response::from_parts(parts, Body::from(bytes)))
    }
    .await;
    result.unwrap_or_else(|e| html(StatusCode::BAD_GATEWAY, format!("<html><body>502 Bad Gateway: {e}</body></html>")))
}

// ---- external-dns ---------------------------------------------------------------------------

/// external-dns's `DNSEndpoint` CRD, v0.22.0, as published (Apache-2.0, see the LICENSE next to it).
pub const EXTERNAL_DNS_CRD: &str =
    include_str!("../thirdparty/external-dns-v0.22.0/dnsendpoints.externaldns.k8s.io.yaml");

/// What external-dns (`--source=crd --provider=<the test DNS>`) does with `DNSEndpoint`s: every
/// endpoint's TXT targets (or CNAME target) are published at its `dnsName` in the test DNS, and names it published
/// whose endpoints went away are removed (it owns what it created, as its TXT registry makes it).
/// Runs until dropped.
pub struct ExternalDns {
    task: tokio::task::JoinHandle<()>,
    published: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

impl Drop for ExternalDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn dns_endpoint_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints"))
}

impl ExternalDns {
    pub fn start(client: Client, dns: Arc<crate::dns::TestDns>) -> ExternalDns {
        let published: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let mine = published.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = dns_endpoint_api(&client).list(&ListParams::default()).await {
                    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for object in list.items.iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
                        for e in object.data["spec"]["endpoints"].as_array().into_iter().flatten() {
                            let kind = e["recordType"].as_str().unwrap_or_default();
                            if kind != "TXT" && kind != "CNAME" {
                                continue;
                            }
                            let name = e["dnsName"].as_str().unwrap_or_default().trim_end_matches('.').to_lowercase();
                            // A CNAME is kept under "CNAME " + name: its one target is the alias.
                            let key = if kind == "CNAME" { format!("CNAME {name}") } else { name };
                            let targets = wanted.entry(key).or_default();
                            for t in e["targets"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
                                if !targets.iter().any(|x| x == t) {
                                    targets.push(t.to_string());
                                }
                            }
                        }
                    }
                    let before = mine.lock().expect("external-dns state").clone();
                    for (key, values) in &wanted {
                        if before.get(key) != Some(values) {
                            match key.strip_prefix("CNAME ") {
                                Some(name) => {
                                    let _ = dns.set_cname(name, &values[0]).await;
                                }
                                None => {
                                    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                                    let _ = dns.set_txt(key, &refs).await;
                                }
                            }
                        }
                    }
                    for key in before.keys().filter(|n| !wanted.contains_key(*n)) {
                        match key.strip_prefix("CNAME ") {
                            Some(name) => {
                                let _ = dns.remove_cname(name).await;
                            }
                            None => {
                                let _ = dns.remove_txt(key).await;
                            }
                        }
                    }
                    *mine.lock().expect("external-dns state") = wanted;
                }
                tokio::time::sleep(TICK).await;
            }
        });
        ExternalDns { task, published }
    }

    /// The names it publishes now (`CNAME <name>` for a CNAME).
    pub fn names(&self) -> Vec<String> {
        self.published.lock().expect("external-dns state").keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str, exact: bool, service: &str) -> Route {
        Route {
            host: host.map(String::from),
            path: path.into(),
            exact,
            namespace: "ns".into(),
            service: service.into(),
            port: 80,
            redirect: false,
        }
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let routes = vec![
            route(Some("a.example"), "/", false, "web"),
            route(Some("a.example"), "/.well-known/pki-validation/fileauth.txt", true, "solver"),
            route(Some("a.example"), "/api", false, "api"),
            route(None, "/", false, "catchall"),
        ];
        let svc = |host, path| find_route(&routes, host, path).map(|r| r.service.as_str());
        assert_eq!(svc("a.example", "/.well-known/pki-validation/fileauth.txt"), Some("solver"));
        assert_eq!(svc("a.example", "/.well-known/pki-validation/other.txt"), Some("web"));
        assert_eq!(svc("a.example", "/api/x"), Some("api"));
        assert_eq!(svc("a.example", "/apix"), Some("web"));
        assert_eq!(svc("b.example", "/x"), Some("catchall"));
        let only_exact = vec![route(Some("a.example"), "/f", true, "solver")];
        assert!(find_route(&only_exact, "a.example", "/f/").is_none());
        assert!(find_route(&only_exact, "b.example", "/f").is_none());
    }
}
