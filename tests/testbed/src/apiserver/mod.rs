//! An in-memory kube-apiserver over HTTP, faithful where kube-rs, kube-runtime and kubectl depend on
//! its behaviour, and answering 501 with a message where it does not implement something.
//!
//! Pure building blocks (no I/O), each with its own unit tests:
//! - [`schema`]: CRD structural-schema validation, defaulting and pruning.
//! - [`cel`]: `x-kubernetes-validations` rules.
//! - [`smp`]: strategic merge patch for built-in kinds.
//! - [`ssa`]: server-side apply and `managedFields`.
//!
//! The server: [`registry`] (served kinds), [`store`] (objects, resourceVersions, history),
//! [`ops`] (write semantics), [`subresources`] (scale, approval, ephemeral containers), [`authn`]
//! (service account tokens, reviews), [`watch`], [`discovery`] and [`aggregated`] (discovery),
//! [`openapi`], [`negotiate`] (answer shapes: Table, PartialObjectMetadata), [`table`],
//! [`selectors`], [`builtin_objects`] (what a new cluster holds), [`gc`] (garbage collector and
//! namespace controller), [`faults`] (fault injection, counters), [`protobuf`] (protobuf request
//! bodies), [`events`] (the two Event APIs), [`http`] (routing).

pub mod cel;
pub mod patchmeta;
pub mod schema;
pub mod smp;
pub mod ssa;

pub mod aggregated;
pub mod authn;
pub mod builtin_objects;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod events;
pub mod faults;
pub mod gc;
pub mod http;
pub mod ingress_admission;
pub mod negotiate;
pub mod openapi;
pub mod ops;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod store;
pub mod subresources;
pub mod table;
pub mod tls;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

pub use faults::{FaultAnswer, FaultMatch, Faults};
use store::{ObjKey, Store};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Events kept for watches to resume from; older resourceVersions get 410 Gone.
    pub history_window: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Watch timeout when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Bearer token; a random one when None.
    pub token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            token: None,
        }
    }
}

/// State shared by the HTTP handlers, watches, the garbage collector and the [`ApiServer`] handle.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Faults,
    pub token: String,
    /// Tokens of further clients, each with its own kubeconfig ([`ApiServer::client_kubeconfig`]).
    pub client_tokens: Mutex<std::collections::HashSet<String>>,
    pub options: Options,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A running in-memory API server; shuts down when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: tempfile::TempDir,
    shutdown: tokio::sync::watch::Sender<bool>,
    ca_pem: String,
}

/// Accepts connections until shutdown; each one is TLS when it starts with a handshake record.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: tokio_rustls::TlsAcceptor,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            let builder = hyper::server::conn::http1::Builder::new();
            let mut first = [0u8; 1];
            let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
            if is_tls {
                let Ok(s) = tls.accept(stream).await else { return };
                // rustls verified any client certificate against the CA: it authenticates the user.
                let svc = match s.get_ref().1.peer_certificates() {
                    Some([_, ..]) => hyper_util::service::TowerToHyperService::new(
                        app.layer(axum::Extension(tls::ClientCertUser(authn::ADMIN_USER.into()))),
                    ),
                    _ => svc,
                };
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(s), svc).with_upgrades();
                tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
            } else {
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades();
                tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
            }
        });
    }
}

/// The kubeconfig text for a server at `url` with `token` (and the CA of its HTTPS certificate).
pub fn kubeconfig_yaml(url: &str, token: &str, ca_pem: Option<&str>) -> String {
    kubeconfig_yaml_with_client_cert(url, token, ca_pem, None)
}

/// [`kubeconfig_yaml`] whose user also has a client certificate and key (PEM).
pub fn kubeconfig_yaml_with_client_cert(
    url: &str,
    token: &str,
    ca_pem: Option<&str>,
    client: Option<(&str, &str)>,
) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut user = json!({"token": token});
    if let Some((cert, key)) = client {
        user["client-certificate-data"] = json!(b64(cert));
        user["client-key-data"] = json!(b64(key));
    }
    let mut cluster = json!({"server": url});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = json!(b64(ca));
    }
    let v = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": "testbed", "user": user}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "testbed", "namespace": "default"}}],
        "current-context": "testbed",
        "preferences": {},
    });
    serde_yaml::to_string(&v).expect("yaml")
}

impl ApiServer {
    /// Starts a server on a free loopback port. Panics if it cannot (test infrastructure).
    pub async fn start() -> ApiServer {
        Self::start_with(Options::default()).await.expect("start the testbed API server")
    }

    pub async fn start_with(options: Options) -> anyhow::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(options.addr).await?;
        let addr = listener.local_addr()?;
        let token = options.token.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut store = Store::new(options.history_window);
        builtin_objects::create(&mut store, addr.port())?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            faults: Faults::default(),
            token: token.clone(),
            client_tokens: Mutex::default(),
            options,
            shutdown: rx,
        });
        let app = axum::Router::new().fallback(http::handle).with_state(shared.clone());
        let cert = tls::generate()?;
        tokio::spawn(serve(listener, app, tokio_rustls::TlsAcceptor::from(cert.config.clone()), tx.subscribe()));
        tokio::spawn(gc::run(shared.clone()));
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("kubeconfig"),
            kubeconfig_yaml_with_client_cert(
                &format!("https://{addr}"),
                &token,
                Some(&cert.ca_pem),
                Some((&cert.client_cert_pem, &cert.client_key_pem)),
            ),
        )?;
        Ok(ApiServer { shared, addr, kubeconfig: dir, shutdown: tx, ca_pem: cert.ca_pem })
    }

    /// `http://127.0.0.1:PORT` (the same port also speaks HTTPS, see [`Self::https_url`]).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`, with the certificate of [`Self::ca_pem`].
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig file: bearer token, `server: https://127.0.0.1:PORT` with the CA's data, namespace
    /// `default`. HTTPS because client-go (kubectl) only sends credentials over TLS.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig.path().join("kubeconfig")
    }

    pub fn kubeconfig_dir(&self) -> &Path {
        self.kubeconfig.path()
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A kubeconfig for one more client (say, one replica of the operator) with a token of its own,
    /// so that [`Faults::cut_off`] can cut that client off alone. Returns the file and the token.
    pub fn client_kubeconfig(&self, name: &str) -> (PathBuf, String) {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.shared.client_tokens.lock().unwrap().insert(token.clone());
        let path = self.kubeconfig.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_yaml(&self.https_url(), &token, Some(&self.ca_pem)))
            .expect("write a client kubeconfig");
        (path, token)
    }

    /// kube config for this server (default namespace `default`).
    pub fn config(&self) -> kube::Config {
        let mut c = kube::Config::new(self.url().parse().expect("url"));
        c.default_namespace = "default".into();
        c.auth_info = serde_json::from_value(json!({"token": self.shared.token})).expect("auth info");
        c
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client")
    }

    /// Fault injection and request counters.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Requests served so far for `verb` on `resource` (plural or `plural/subresource`).
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        self.shared.faults.count(verb, resource)
    }

    /// Ends every open watch.
    pub fn drop_watches(&self) {
        self.shared.faults.drop_watches();
    }

    /// Forgets the watch history: every watch from an earlier resourceVersion now gets 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// Changes the number of events kept for watches.
    pub fn set_history_window(&self, events: usize) {
        self.shared.store.lock().unwrap().set_history_limit(events);
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv()
    }

    /// Reads an object directly from the store (`group` "" for core), bypassing HTTP.
    pub fn object(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<serde_json::Value> {
        let key = ObjKey {
            storage: registry::storage_key(group, plural),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        };
        self.shared.store.lock().unwrap().get(&key).map(|o| (*o).clone())
    }

    /// Number of stored objects of a resource, in one namespace or all.
    pub fn object_count(&self, group: &str, plural: &str, namespace: Option<&str>) -> usize {
        let store = self.shared.store.lock().unwrap();
        store.list_iter(&registry::storage_key(group, plural), namespace, None).count()
    }

    /// Stores `object` as it is, bypassing admission (schema, CEL rules, defaults): what etcd may
    /// hold from before a CRD's schema tightened. Fills in `uid`, `creationTimestamp` and
    /// `generation` when missing; watchers see it as added (or modified).
    pub fn put_raw(&self, group: &str, plural: &str, mut object: serde_json::Value) {
        let metadata = &mut object["metadata"];
        if metadata["uid"].is_null() {
            metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
        }
        if metadata["creationTimestamp"].is_null() {
            metadata["creationTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        if metadata["generation"].is_null() {
            metadata["generation"] = json!(1);
        }
        let key = ObjKey {
            storage: registry::storage_key(group, plural),
            namespace: metadata["namespace"].as_str().unwrap_or_default().to_string(),
            name: metadata["name"].as_str().expect("metadata.name").to_string(),
        };
        self.shared.store.lock().unwrap().put(&key, object);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
