//! certorder end to end: the real controller against the testbed's API server and DNS server,
//! driven the way a user would (kubectl-shaped objects, the `certorder` CLI for reviews).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use certorder::api::{CertificateOrder, ClusterCertificateProvider, ClusterDNSZone, Phase};
use certorder::lifecycle::Timing;
use certorder::pki::{self, PrivateKey};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use testbed::ApiServer;
use testbed::dns::TestDns;

const NS: &str = "shop";

struct Env {
    api: ApiServer,
    dns: std::sync::Arc<TestDns>,
    client: Client,
    /// The operator, in process; `None` when a test runs operator processes itself.
    controller: Option<tokio::task::JoinHandle<()>>,
    /// Where the in-process operator serves /metrics, /healthz and /readyz.
    metrics_port: u16,
    /// Replicas with leader election, in process, each with its own client (token), when a test
    /// runs them instead of the single operator (see [`Env::start_replicas`]).
    replicas: Vec<Replica>,
}

struct Replica {
    identity: String,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(controller) = &self.controller {
            controller.abort();
        }
        for replica in &self.replicas {
            replica.task.abort();
        }
    }
}

impl Env {
    async fn start() -> Env {
        Env::start_with_controller(true).await
    }

    /// The API server, DNS, CRDs and namespaces, and the in-process operator when asked.
    async fn start_with_controller(in_process: bool) -> Env {
        // The operator's output goes to the test's output and to CAPTURED_LOGS, which tests search
        // (for secrets that must never appear). UCloud request logs are on, so they can be searched.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn".into())
            .add_directive("certorder::provider::ucloud=debug".parse().unwrap());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(tracing_subscriber::fmt::writer::MakeWriterExt::and(
                tracing_subscriber::fmt::TestWriter::new,
                || CapturedLog,
            ))
            .try_init();
        let api = ApiServer::start().await;
        let dns = std::sync::Arc::new(TestDns::start(&["example.com", "example.org"]).await.expect("test DNS"));
        let client = api.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [CertificateOrder::crd(), ClusterCertificateProvider::crd(), ClusterDNSZone::crd()] {
            crds.create(&PostParams::default(), &crd).await.expect("create CRD");
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in [NS, "certorder-system"] {
            let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces.create(&PostParams::default(), &object).await.expect("create namespace");
        }
        let metrics_port = free_port();
        let controller = in_process.then(|| spawn_controller(&client, test_config(dns.addr(), metrics_port)));
        Env { api, dns, client, controller, metrics_port, replicas: Vec::new() }
    }

    /// Runs two operator replicas with leader election (a short Lease) in place of the single one.
    fn start_replicas(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
        for _ in 0..2 {
            self.add_replica();
        }
    }

    fn add_replica(&mut self) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let identity = format!("replica-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (kubeconfig, token) = self.api.client_kubeconfig(&identity);
        let mut config = test_config(self.dns.addr(), free_port());
        config.leader_election = Some(certorder::controller::LeaderElection {
            lease_name: "certorder".into(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(4),
            renew_grace: Duration::from_secs(2),
        });
        let task = tokio::spawn(async move {
            let options = kube::config::KubeConfigOptions::default();
            let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("read the replica's kubeconfig");
            let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("kube config");
            let client = Client::try_from(client_config).expect("client");
            // A replica cut off from the API server stops by itself: that is an end, not a failure.
            if let Err(e) = certorder::controller::run(client, config).await {
                tracing::warn!(error = %e, "replica stopped");
            }
        });
        self.replicas.push(Replica { identity, token, task });
    }

    /// The replica that holds the Lease, if any.
    async fn leader(&self) -> Option<usize> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), "certorder-system");
        let holder = leases.get_opt("certorder").await.ok().flatten()?.spec?.holder_identity?;
        self.replicas.iter().position(|r| r.identity == holder && !r.task.is_finished())
    }

    /// Cuts the leader off from the API server for good (it fences itself and stops); a new
    /// replica takes its place as the standby.
    async fn partition_leader(&mut self) -> bool {
        let Some(i) = self.leader().await else { return false };
        self.api.faults().cut_off(&self.replicas[i].token);
        self.add_replica();
        true
    }

    /// Stops the operator wherever it is (as a crash would) and starts a new one. With replicas,
    /// the leader dies without releasing its Lease and a new standby starts.
    async fn restart_controller(&mut self) {
        if !self.replicas.is_empty() {
            if let Some(i) = self.leader().await {
                self.replicas.remove(i).task.abort();
                self.add_replica();
            }
            return;
        }
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
        self.metrics_port = free_port();
        self.controller = Some(spawn_controller(&self.client, test_config(self.dns.addr(), self.metrics_port)));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET to the operator's metrics server: (status code, body).
async fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let code = answer.split_whitespace().nth(1)?.to_string();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// The operator's configuration in tests: the test DNS server, and short waits.
fn test_config(dns: std::net::SocketAddr, metrics_port: u16) -> certorder::controller::Config {
    certorder::controller::Config {
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        dns_servers: vec![dns],
        timing: Timing {
            self_check_initial: Duration::from_millis(200),
            self_check_max: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            letter_poll: Duration::from_secs(1),
            ..Timing::default()
        },
        ..Default::default()
    }
}

fn spawn_controller(client: &Client, config: certorder::controller::Config) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = certorder::controller::run(client, config).await {
            panic!("controller stopped: {e:#}");
        }
    })
}

/// Everything the operator logged in this test binary.
static CAPTURED_LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct CapturedLog;

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED_LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> String {
    String::from_utf8_lossy(&CAPTURED_LOGS.lock().unwrap()).into_owned()
}

impl Env {
    /// The notes of the events about `order` with `reason`.
    async fn events(&self, order: &str, reason: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), NS);
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(order)
                    && e.reason.as_deref() == Some(reason)
            })
            .map(|e| e.note.unwrap_or_default())
            .collect()
    }

    fn orders(&self) -> Api<CertificateOrder> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn apply(&self, object: Value) {
        let kind = object["kind"].as_str().unwrap().to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let params = PatchParams::apply("e2e-user");
        match kind.as_str() {
            "ClusterCertificateProvider" => {
                let api: Api<ClusterCertificateProvider> = Api::all(self.client.clone());
                api.patch(&name, &params, &Patch::Apply(object)).await.expect("apply provider");
            }
            "CertificateOrder" => {
                self.orders().patch(&name, &params, &Patch::Apply(object)).await.expect("apply order");
            }
            "Secret" => {
                self.secrets().patch(&name, &params, &Patch::Apply(object)).await.expect("apply secret");
            }
            other => panic!("no apply for {other}"),
        }
    }

    async fn provider(&self, name: &str, review: &str) {
        self.apply(json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "ClusterCertificateProvider",
            "metadata": {"name": name},
            "spec": {"local": {"caSecretRef": {"name": format!("{name}-ca"), "namespace": "certorder-system"}, "review": review}},
        }))
        .await;
    }

    /// Waits until the order satisfies `done`, showing its last status when it does not.
    async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&CertificateOrder) -> bool) -> CertificateOrder {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let order = self.orders().get(name).await.expect("get order");
            if done(&order) {
                return order;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "order {name} never reached {what}; status: {}",
                    serde_json::to_string_pretty(&order.status).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_phase(&self, name: &str, phase: Phase) -> CertificateOrder {
        self.wait_for(name, phase.as_str(), |o| o.status.as_ref().is_some_and(|s| s.phase == phase)).await
    }

    /// Publishes every TXT record the order's status asks for.
    async fn publish_challenges(&self, order: &CertificateOrder) {
        let mut records: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in &order.status.as_ref().unwrap().challenges {
            records.entry(c.target.clone()).or_default().push(c.expected_value.clone());
        }
        for (name, values) in records {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            self.dns.set_txt(&name, &values).await.expect("set TXT");
        }
    }

    /// Runs the real `certorder` binary (as `kubectl certorder …` would) against the testbed.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_certorder"))
            .args(args)
            .env("KUBECONFIG", self.api.kubeconfig_path())
            .output()
            .expect("run certorder")
    }
}

fn condition<'a>(order: &'a CertificateOrder, type_: &str) -> Option<&'a certorder::api::Condition> {
    order.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn has_condition(order: &CertificateOrder, type_: &str, status: &str) -> bool {
    condition(order, type_).is_some_and(|c| c.status == status)
}

fn dv_order(name: &str, domains: &[&str], provider: &str) -> Value {
    json!({
        "apiVersion": "certorder.io/v1alpha1",
        "kind": "CertificateOrder",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": provider},
            "product": {"type": "DV"},
            "domains": domains,
            "secretName": format!("{name}-tls"),
            "secretTemplate": {"labels": {"team": "web"}},
        },
    })
}

fn ov_order(name: &str, company: &str) -> Value {
    json!({
        "apiVersion": "certorder.io/v1alpha1",
        "kind": "CertificateOrder",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": "manual"},
            "product": {"brand": "certorder", "name": "Local OV", "type": "OV"},
            "domains": ["shop.example.com", "www.shop.example.com"],
            "privateKey": {"algorithm": "ECDSA", "size": 384},
            "secretName": format!("{name}-tls"),
            "organization": {"name": company, "address": "1 Century Avenue", "city": "Shanghai", "region": "Shanghai", "country": "CN", "phone": "+86 21 5555 0000"},
            "applicant": {"name": "Li Lei", "phone": "+86 138 0000 0000", "email": "li.lei@example.com"},
            "documents": {"confirmationLetter": {"name": "acme-letter", "key": "letter.pdf"}},
        },
    })
}

fn letter_secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "acme-letter", "namespace": NS},
        "type": "Opaque",
        "data": {"letter.pdf": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"%PDF-1.4\n% stamped letter\n%%EOF\n")},
    })
}

/// The TLS Secret holds a chain to the provider's CA, for every name, matching its key.
async fn assert_verified_secret(env: &Env, secret_name: &str, domains: &[&str], provider: &str) -> Secret {
    let secret = env.secrets().get(secret_name).await.expect("TLS Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    let text = |k: &str| String::from_utf8(data.get(k).unwrap_or_else(|| panic!("no {k}")).0.clone()).unwrap();
    let key = PrivateKey::from_pem(&text("tls.key")).expect("tls.key is a key");
    let ca_secret: Api<Secret> = Api::namespaced(env.client.clone(), "certorder-system");
    let ca = ca_secret.get(&format!("{provider}-ca")).await.expect("CA Secret");
    let ca_pem = String::from_utf8(ca.data.unwrap().get("tls.crt").unwrap().0.clone()).unwrap();
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let info =
        pki::verify_issued(&text("tls.crt"), &key, &domains, chrono::Utc::now(), Some(std::slice::from_ref(&ca_pem)))
            .expect("the Secret's certificate verifies");
    assert_eq!(text("ca.crt").trim(), ca_pem.trim());
    assert_eq!(secret.annotations().get("certorder.io/serial"), Some(&info.serial_hex));
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ov_order_with_manual_review_is_issued_after_approval() {
    let env = Env::start().await;
    env.provider("manual", "Manual").await;
    env.apply(ov_order("acme", "ACME Ltd")).await;

    // Without the letter the order says what to do and waits.
    let waiting = env
        .wait_for("acme", "waiting for the letter", |o| {
            o.status.as_ref().is_some_and(|s| s.phase == Phase::InfoSubmitted)
        })
        .await;
    assert!(
        waiting.status.as_ref().unwrap().message.as_deref().unwrap().contains("acme-letter"),
        "{:?}",
        waiting.status
    );
    assert!(has_condition(&waiting, "Purchased", "True"));
    assert!(has_condition(&waiting, "InfoSubmitted", "True"));

    env.apply(letter_secret()).await;
    let in_review = env.wait_phase("acme", Phase::OrganizationReview).await;
    assert!(has_condition(&in_review, "DocumentsUploaded", "True"));
    assert!(has_condition(&in_review, "Ready", "False"));
    // Domain validation runs beside the review: the challenges are already listed.
    let challenges = &in_review.status.as_ref().unwrap().challenges;
    assert_eq!(challenges.len(), 2);
    assert!(
        challenges
            .iter()
            .all(|c| c.target == "_dnsauth.shop.example.com" || c.target == "_dnsauth.www.shop.example.com")
    );

    let out = env.cli(&["approve", "acme", "-n", NS]);
    assert!(out.status.success(), "approve: {}", String::from_utf8_lossy(&out.stderr));

    let validating = env.wait_phase("acme", Phase::DomainValidation).await;
    assert!(has_condition(&validating, "OrganizationVerified", "True"));
    let first = &validating.status.as_ref().unwrap().challenges[0];
    let check = env
        .wait_for("acme", "a failing self-check", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.challenges.iter().any(|c| c.self_check.as_ref().is_some_and(|c| !c.passed)))
        })
        .await;
    let seen = check.status.unwrap().challenges.into_iter().find_map(|c| c.self_check.filter(|s| !s.passed)).unwrap();
    assert!(seen.diagnosis.contains("_dnsauth.shop.example.com does not exist"), "{seen:?}");
    assert!(!first.expected_value.is_empty());

    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("acme", Phase::Issued).await;
    assert!(has_condition(&issued, "Ready", "True"));
    assert!(has_condition(&issued, "Stalled", "False"));
    let status = issued.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, issued.metadata.generation);
    let cert = status.certificate.as_ref().unwrap();
    assert!(cert.issuer.starts_with("CN=certorder local CA"), "{}", cert.issuer);
    // The reviewer's decision lives in status (the subresource order authors are not granted)
    // and outlives the operator's own status writes.
    let approval = status.approval.as_ref().expect("status.approval kept through the operator's writes");
    assert_eq!((approval.decision, approval.generation), (certorder::api::ApprovalDecision::Approved, 1));
    assert!(!issued.annotations().keys().any(|k| k.starts_with("certorder.io/review")));
    assert!(status.renewal_time.is_some());

    let secret =
        assert_verified_secret(&env, "acme-tls", &["shop.example.com", "www.shop.example.com"], "manual").await;
    let key = PrivateKey::from_pem(&String::from_utf8(secret.data.unwrap()["tls.key"].0.clone()).unwrap()).unwrap();
    assert_eq!(key.algorithm(), pki::KeyAlgorithm::EcdsaP384);
    // The pending key Secret is gone once the certificate is installed.
    let pending = certorder::controller::pending_key_secret_name("acme");
    wait_until(|| async { env.secrets().get_opt(&pending).await.unwrap().is_none() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_order_is_resubmitted_when_the_spec_is_fixed() {
    let env = Env::start().await;
    env.provider("manual", "Manual").await;
    env.apply(letter_secret()).await;
    env.apply(ov_order("acme", "ACME")).await;
    env.wait_phase("acme", Phase::OrganizationReview).await;

    let out =
        env.cli(&["reject", "acme", "-n", NS, "--reason", "the company name does not match the business licence"]);
    assert!(out.status.success(), "reject: {}", String::from_utf8_lossy(&out.stderr));
    let rejected = env.wait_phase("acme", Phase::Rejected).await;
    let status = rejected.status.as_ref().unwrap();
    assert!(status.message.as_deref().unwrap().contains("does not match the business licence"));
    assert!(has_condition(&rejected, "Stalled", "True"));
    assert!(has_condition(&rejected, "Ready", "False"));

    // The user fixes the company name: a new generation resubmits info and the letter.
    env.apply(ov_order("acme", "ACME Limited")).await;
    let resubmitted = env
        .wait_for("acme", "resubmitted for review", |o| {
            o.status.as_ref().is_some_and(|s| s.phase == Phase::OrganizationReview && s.observed_generation == Some(2))
        })
        .await;
    assert!(has_condition(&resubmitted, "Stalled", "False"));
    let out = env.cli(&["approve", "acme", "-n", NS]);
    assert!(out.status.success(), "approve: {}", String::from_utf8_lossy(&out.stderr));
    let validating = env.wait_phase("acme", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    env.wait_phase("acme", Phase::Issued).await;
    assert_verified_secret(&env, "acme-tls", &["shop.example.com", "www.shop.example.com"], "manual").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dv_order_with_automatic_review_is_issued_and_settles() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("site", &["example.org", "*.example.org", "bücher.example.com"], "auto")).await;
    let validating = env.wait_phase("site", Phase::DomainValidation).await;
    let status = validating.status.as_ref().unwrap();
    assert_eq!(status.domains, ["example.org", "*.example.org", "xn--bcher-kva.example.com"]);
    assert!(status.message.as_deref().unwrap().contains("create TXT _dnsauth.example.org"), "{:?}", status.message);
    assert!(!has_condition(&validating, "DocumentsUploaded", "False"), "DV has no documents step");
    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("site", Phase::Issued).await;
    let secret = assert_verified_secret(
        &env,
        "site-tls",
        &["example.org", "*.example.org", "xn--bcher-kva.example.com"],
        "auto",
    )
    .await;
    assert_eq!(secret.labels().get("team").map(String::as_str), Some("web"));
    assert_eq!(secret.labels().get("certorder.io/order").map(String::as_str), Some("site"));
    assert!(secret.owner_references().is_empty(), "the TLS Secret outlives its order");

    // Settled: no writes at all while nothing changes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = writes(&env);
    let version = env.orders().get("site").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(writes(&env), before, "a settled order must cause no API writes");
    assert_eq!(env.orders().get("site").await.unwrap().resource_version(), version);
    assert_eq!(issued.status.unwrap().failures, 0);
}

/// Order names may have 253 characters; label values only 63. Everything the order creates is
/// labelled with a short stable form of the name and annotated with the full one, and it is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_a_253_character_name_is_issued() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    let name = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(name.len(), 253);
    let mut order = dv_order(&name, &["long.example.com"], "auto");
    order["spec"]["secretName"] = json!("long-tls");
    env.apply(order).await;
    let validating = env.wait_phase(&name, Phase::DomainValidation).await;
    let key_secret = validating.status.as_ref().unwrap().private_key_secret.clone().expect("a pending key Secret");
    assert!(key_secret.len() <= 253 && key_secret.ends_with("-certorder-key"), "{key_secret}");
    env.publish_challenges(&validating).await;
    let issued = env.wait_phase(&name, Phase::Issued).await;
    assert_eq!(issued.status.unwrap().failures, 0);
    let secret = assert_verified_secret(&env, "long-tls", &["long.example.com"], "auto").await;
    let label = secret.labels().get("certorder.io/order").cloned().unwrap_or_default();
    assert!(label.len() <= 63 && name.starts_with(label.split('-').next().unwrap()), "{label}");
    assert_eq!(secret.annotations().get("certorder.io/order"), Some(&name), "the full name is in the annotation");
    let phases = env.events(&name, "Issued").await;
    assert_eq!(phases.len(), 1, "the order's events are written under a shortened name: {phases:?}");
    // The pending key went away once the certificate was installed.
    wait_until(|| async { env.secrets().get_opt(&key_secret).await.unwrap().is_none() }).await;
}

/// A provider says whether it can be used as soon as it is created, before any order names it,
/// and says so again once what was wrong is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_report_whether_they_can_be_used_before_any_order() {
    let env = Env::start().await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    env.provider("idle", "Automatic").await;
    env.apply(json!({
        "apiVersion": "certorder.io/v1alpha1",
        "kind": "ClusterCertificateProvider",
        "metadata": {"name": "nokeys"},
        "spec": {"ucloud": {
            "endpoint": sim.endpoint(),
            "credentialsSecretRef": {"name": "nokeys-credentials", "namespace": "certorder-system"},
        }},
    }))
    .await;
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    let ready = |name: &'static str| {
        let providers = providers.clone();
        async move {
            let p = providers.get(name).await.ok()?;
            let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            Some((c.status, c.reason, c.message))
        }
    };
    wait_until(|| async { ready("idle").await.is_some_and(|(s, _, _)| s == "True") }).await;
    wait_until(|| async { ready("nokeys").await.is_some() }).await;
    let (status, reason, message) = ready("nokeys").await.unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(message.contains("credentials Secret certorder-system/nokeys-credentials not found"), "{message}");
    assert!(env.orders().list(&Default::default()).await.unwrap().items.is_empty());

    // The Secret is the user's and not watched: it is looked for again every few seconds.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "certorder-system");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "nokeys-credentials"},
        "stringData": {"PublicKey": USSL_PUBLIC_KEY, "PrivateKey": USSL_PRIVATE_KEY},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    wait_until(|| async { ready("nokeys").await.is_some_and(|(s, _, _)| s == "True") }).await;
}

fn writes(env: &Env) -> u64 {
    ["create", "update", "patch", "delete"]
        .iter()
        .flat_map(|verb| ["secrets", "certificateorders", "events"].map(|r| env.api.request_count(verb, r)))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_order_cleans_up_and_keeps_the_secret() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    // One order issued, one still validating when deleted.
    env.apply(dv_order("done", &["done.example.com"], "auto")).await;
    env.apply(dv_order("halfway", &["halfway.example.com"], "auto")).await;
    let done = env.wait_phase("done", Phase::DomainValidation).await;
    env.publish_challenges(&done).await;
    env.wait_phase("done", Phase::Issued).await;
    env.wait_phase("halfway", Phase::DomainValidation).await;
    let pending = certorder::controller::pending_key_secret_name("halfway");
    assert!(env.secrets().get_opt(&pending).await.unwrap().is_some(), "the pending key exists before deletion");

    for name in ["done", "halfway"] {
        env.orders().delete(name, &DeleteParams::default()).await.expect("delete order");
    }
    wait_until(|| async {
        env.orders().get_opt("done").await.unwrap().is_none()
            && env.orders().get_opt("halfway").await.unwrap().is_none()
    })
    .await;
    wait_until(|| async { env.secrets().get_opt(&pending).await.unwrap().is_none() }).await;
    assert_verified_secret(&env, "done-tls", &["done.example.com"], "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_orders_are_refused_with_the_rule_that_says_what_to_fix() {
    let env = Env::start().await;
    let refusal = |object: Value| {
        let orders = env.orders();
        async move {
            let order: CertificateOrder = serde_json::from_value(object).unwrap();
            match orders.create(&PostParams::default(), &order).await {
                Err(kube::Error::Api(s)) => {
                    assert_eq!(s.code, 422, "{s:?}");
                    s.message
                }
                other => panic!("accepted an invalid order: {other:?}"),
            }
        }
    };
    let mut wildcard_http = dv_order("wild", &["*.example.com"], "auto");
    wildcard_http["spec"]["domainValidation"] = json!({"method": "HTTP"});
    assert!(refusal(wildcard_http).await.contains("wildcard names (*.example.com) can only be validated by DNS"));

    let mut no_letter = ov_order("noletter", "ACME");
    no_letter["spec"].as_object_mut().unwrap().remove("documents");
    assert!(refusal(no_letter).await.contains("OV and EV certificates need spec.documents.confirmationLetter"));

    let mut no_org = ov_order("noorg", "ACME");
    no_org["spec"].as_object_mut().unwrap().remove("organization");
    assert!(refusal(no_org).await.contains("OV and EV certificates need spec.organization"));

    let bad_name = dv_order("badname", &["https://example.com/"], "auto");
    assert!(refusal(bad_name).await.contains("each domain must be a lowercase DNS name"));

    let duplicate = dv_order("dup", &["example.com", "example.com"], "auto");
    assert!(refusal(duplicate).await.contains("Duplicate value"));

    let too_many: Vec<String> = (0..101).map(|i| format!("h{i}.example.com")).collect();
    let too_many = dv_order("many", &too_many.iter().map(String::as_str).collect::<Vec<_>>(), "auto");
    assert!(refusal(too_many).await.contains("100"));
}

async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// UCloud USSL, through the simulator.

const USSL_PUBLIC_KEY: &str = "ucloud-e2e@example.com1296235120854146120";
const USSL_PRIVATE_KEY: &str = "46f09bb9fab4f12dfc160dae12273d5332b5debe-e2e";

/// The company and applicant the test providers send for orders that name none: USSL requires
/// them for every order, DV included.
fn ucloud_defaults() -> Value {
    json!({
        "organization": {"name": "Example Trading Co., Ltd.", "division": "IT", "address": "1 Example Road",
            "city": "Shanghai", "region": "Shanghai", "country": "CN", "phone": "+86-21-5555-0100"},
        "applicant": {"name": "Han Meimei", "phone": "+86 139 0000 0000", "email": "han.meimei@example.com", "title": "IT Manager"},
    })
}

/// A UCloud provider `name` pointed at the simulator, with its key pair in a Secret.
async fn ucloud_provider(env: &Env, sim: &testbed::ussl::UsslSim, name: &str, private_key: &str) {
    ucloud_provider_with(env, sim, name, private_key, Some(ucloud_defaults())).await;
}

async fn ucloud_provider_with(
    env: &Env,
    sim: &testbed::ussl::UsslSim,
    name: &str,
    private_key: &str,
    defaults: Option<Value>,
) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "certorder-system");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-credentials"), "namespace": "certorder-system"},
        "stringData": {"PublicKey": USSL_PUBLIC_KEY, "PrivateKey": private_key},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.expect("create credentials Secret");
    env.apply(json!({
        "apiVersion": "certorder.io/v1alpha1",
        "kind": "ClusterCertificateProvider",
        "metadata": {"name": name},
        "spec": {"ucloud": {
            "endpoint": sim.endpoint(),
            "projectId": "org-e2e",
            "credentialsSecretRef": {"name": format!("{name}-credentials"), "namespace": "certorder-system"},
            "requestsPerSecond": 50,
            // The simulator's CA is no root of the web's: trusted through the provider's bundle.
            "caBundle": sim.ca_pem(),
            "reviewPollInterval": "1s",
            "validationPollInterval": "1s",
            "defaults": defaults,
        }},
    }))
    .await;
}

/// Lets provider `name` buy again once an unconfirmed purchase was not found for `after`: for
/// tests whose faults never commit a purchase (the simulator lists at once), so looking for that
/// long proves nothing was bought.
async fn allow_buying_again(env: &Env, name: &str, after: &str) {
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    let patch = json!({"spec": {"ucloud": {"buyAgainAfter": after}}});
    providers.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the provider");
}

async fn ucloud_env() -> (Env, testbed::ussl::UsslSim) {
    let env = Env::start().await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    (env, sim)
}

fn ucloud_dv_order(name: &str, domains: &[&str], provider: &str) -> Value {
    let mut order = dv_order(name, domains, provider);
    order["spec"]["product"] = json!({"brand": "TrustAsia", "name": "TrustAsiaDVG5", "type": "DV"});
    order
}

/// The TLS Secret holds a chain to the simulator's CA, for every name, matching its key.
async fn assert_ussl_secret(env: &Env, sim: &testbed::ussl::UsslSim, secret_name: &str, domains: &[&str]) {
    let secret = env.secrets().get(secret_name).await.expect("TLS Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    let text = |k: &str| String::from_utf8(data.get(k).unwrap_or_else(|| panic!("no {k}")).0.clone()).unwrap();
    let key = PrivateKey::from_pem(&text("tls.key")).expect("tls.key is a key");
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let info = pki::verify_issued(&text("tls.crt"), &key, &domains, chrono::Utc::now(), Some(&[sim.ca_pem()]))
        .expect("the Secret's certificate verifies against the simulator's CA");
    assert!(info.issuer.contains("USSL simulator root CA"), "{}", info.issuer);
}

fn vendor_id(order: &CertificateOrder) -> Option<String> {
    order.status.as_ref()?.order.as_ref()?.id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_dv_order_with_dns_validation_is_bought_validated_and_installed() {
    let (env, sim) = ucloud_env().await;
    env.apply(ucloud_dv_order("shop", &["shop.example.com", "www.shop.example.com"], "ucloud")).await;

    let validating = env.wait_phase("shop", Phase::DomainValidation).await;
    let status = validating.status.as_ref().unwrap();
    let vendor = status.order.as_ref().unwrap();
    assert_eq!(vendor.state.as_deref(), Some("DOMAIN_AUTH"), "the vendor's state code, verbatim");
    let mut targets: Vec<&str> = status.challenges.iter().map(|c| c.target.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["_dnsauth.shop.example.com", "_dnsauth.www.shop.example.com"]);
    // The simulator validates over DNS itself: nothing is issued before the records exist.
    let sim_order = sim.orders().into_iter().next().unwrap();
    assert_eq!(sim_order.state, "DOMAIN_AUTH");
    assert_eq!(Some(sim_order.id.to_string()), vendor.id);
    assert_eq!(sim_order.domains, ["shop.example.com", "www.shop.example.com"]);

    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("shop", Phase::Issued).await;
    assert!(has_condition(&issued, "Ready", "True"));
    assert_ussl_secret(&env, &sim, "shop-tls", &["shop.example.com", "www.shop.example.com"]).await;
    assert_eq!(sim.purchases(), 1);
    assert_eq!(sim.calls("GetCertificateList"), 0, "a first purchase has nothing to look for");
    assert_eq!(sim.orders()[0].state, "COMPLETED");
    let csr = sim.orders()[0].csr.clone().unwrap();
    assert!(csr.contains("BEGIN CERTIFICATE REQUEST"), "the operator's own CSR was sent (CSROnline=0)");

    // Renewal re-issues under the same purchase with a new key and new challenges.
    let first = issued.status.as_ref().unwrap().certificate.clone().unwrap();
    let out = env.cli(&["renew", "shop", "-n", NS]);
    assert!(out.status.success(), "renew: {}", String::from_utf8_lossy(&out.stderr));
    let old_values: Vec<String> =
        validating.status.as_ref().unwrap().challenges.iter().map(|c| c.expected_value.clone()).collect();
    let renewing = env
        .wait_for("shop", "new challenges", |o| {
            o.status.as_ref().is_some_and(|s| {
                !s.challenges.is_empty() && s.challenges.iter().all(|c| !old_values.contains(&c.expected_value))
            })
        })
        .await;
    assert_eq!(sim.calls("ReIssueCertificateCSRInfo"), 1);
    env.publish_challenges(&renewing).await;
    let renewed = env
        .wait_for("shop", "a new certificate", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Issued && s.certificate.as_ref().is_some_and(|c| c.serial != first.serial)
            })
        })
        .await;
    assert_ne!(renewed.status.as_ref().unwrap().certificate.as_ref().unwrap().key_fingerprint, first.key_fingerprint);
    assert_ussl_secret(&env, &sim, "shop-tls", &["shop.example.com", "www.shop.example.com"]).await;
    assert_eq!(sim.purchases(), 1, "renewed under the same purchase");
}

/// UCloud's `DNS_CNAME` validation (Sectigo-style DCV): with a `ClusterDNSZone`, certorder
/// publishes the CNAME itself through BIND (RFC 2136), the simulated CA finds it, and the record
/// is removed after issuance while another value in the zone stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_dns_cname_validation_is_published_as_a_cname_through_rfc2136_and_removed() {
    let (env, bind) = env_with_bind(&[testbed::bind::Zone {
        name: "example.net",
        records: &["_dnsauth.www 60 IN TXT \"someone-elses-value\""],
        updatable: true,
    }])
    .await;
    rfc2136_zone(&env, &bind).await;
    // The simulated CA looks the CNAME up where certorder publishes it.
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, bind.addr()).await;
    sim.set_dns_cname(true);
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    env.apply(ucloud_dv_order("cname", &["www.example.net"], "ucloud")).await;

    let published = env
        .wait_for("cname", "its CNAME published", |o| {
            o.status.as_ref().is_some_and(|s| s.published.as_ref().is_some_and(|p| !p.dns_records.is_empty()))
        })
        .await;
    let status = published.status.as_ref().unwrap();
    let challenge = &status.challenges[0];
    assert_eq!(challenge.record_type, Some(certorder::api::DnsRecordType::CNAME));
    let sim_order = sim.orders().into_iter().next().unwrap();
    let (name, value) = sim_order.dns_record("www.example.net", &sim_order.tokens["www.example.net"]);
    assert_eq!((challenge.target.as_str(), challenge.expected_value.as_str()), (name.as_str(), value.as_str()));
    let record = &status.published.as_ref().unwrap().dns_records[0];
    assert_eq!((record.type_.as_str(), record.name.as_str(), record.value.as_str()), ("CNAME", &*name, &*value));

    let issued = env.wait_phase("cname", Phase::Issued).await;
    assert!(has_condition(&issued, "Ready", "True"));
    assert_ussl_secret(&env, &sim, "cname-tls", &["www.example.net"]).await;
    assert_eq!(sim.purchases(), 1);
    // Removed after validation: only certorder's record.
    wait_until(|| async {
        env.orders().get("cname").await.unwrap().status.as_ref().is_some_and(|s| s.published.is_none())
    })
    .await;
    assert_eq!(bind.cname(&name).await, None, "the CNAME certorder added is removed");
    assert_eq!(bind.txt("_dnsauth.www.example.net").await, ["someone-elses-value"]);
    println!("figures: issued 1 UCloud DNS_CNAME order through BIND (RFC 2136 CNAME); records left behind: 0");
}

/// `DNS_CNAME` through external-dns: the order's `DNSEndpoint` holds a CNAME endpoint, which the
/// emulated external-dns publishes to the DNS the simulated CA asks; it is gone after issuance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_dns_cname_validation_is_published_as_a_cname_dns_endpoint() {
    let (env, sim) = ucloud_env().await;
    sim.set_dns_cname(true);
    let crd: CustomResourceDefinition = serde_yaml::from_str(testbed::cluster::EXTERNAL_DNS_CRD).unwrap();
    Api::<CustomResourceDefinition>::all(env.client.clone()).create(&PostParams::default(), &crd).await.unwrap();
    let external_dns = testbed::cluster::ExternalDns::start(env.client.clone(), env.dns.clone());
    env.dns_zone(json!({"zone": "example.com", "externalDNS": {}}), "example-com").await;
    env.apply(ucloud_dv_order("edns-cname", &["shop.example.com"], "ucloud")).await;
    let published = env
        .wait_for("edns-cname", "its CNAME published", |o| {
            o.status.as_ref().is_some_and(|s| s.published.as_ref().is_some_and(|p| !p.dns_records.is_empty()))
        })
        .await;
    let status = published.status.as_ref().unwrap();
    assert!(status.challenges[0].is_cname());
    let record = &status.published.as_ref().unwrap().dns_records[0];
    assert_eq!(
        (record.type_.as_str(), &record.name, &record.value),
        ("CNAME", &status.challenges[0].target, &status.challenges[0].expected_value)
    );
    env.wait_phase("edns-cname", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "edns-cname-tls", &["shop.example.com"]).await;
    let gvk = kube::api::GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    let endpoints: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints"),
    );
    wait_until(|| async { endpoints.get_opt("edns-cname-dcv").await.unwrap().is_none() }).await;
    wait_until(|| async { external_dns.names().is_empty() }).await;
    assert_eq!(sim.purchases(), 1);
}

/// A `DNS_CNAME` name that already holds someone else's CNAME is reported, not overwritten;
/// once the person removes it, certorder publishes its own and the order is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_dns_cname_over_someone_elses_cname_is_reported_not_overwritten() {
    let (env, sim) = ucloud_env().await;
    sim.set_dns_cname(true);
    sim.set_dns_cname_label("_dcv");
    env.dns.set_cname("_dcv.shop.example.com", "someone-else.example.org").await.unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(testbed::cluster::EXTERNAL_DNS_CRD).unwrap();
    Api::<CustomResourceDefinition>::all(env.client.clone()).create(&PostParams::default(), &crd).await.unwrap();
    let _external_dns = testbed::cluster::ExternalDns::start(env.client.clone(), env.dns.clone());
    env.dns_zone(json!({"zone": "example.com", "externalDNS": {}}), "example-com").await;
    env.apply(ucloud_dv_order("taken", &["shop.example.com"], "ucloud")).await;
    let refused = env
        .wait_for("taken", "the foreign CNAME reported", |o| {
            serde_json::to_string(&o.status).unwrap().contains("is already a CNAME to someone-else.example.org")
        })
        .await;
    let status = refused.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::DomainValidation);
    assert!(status.published.as_ref().is_none_or(|p| p.dns_records.is_empty()), "nothing published");
    let checker = certorder::validation::dns::DnsChecker::new(
        certorder::validation::dns::DnsCheckerConfig::with_nameservers(vec![env.dns.addr()]),
    )
    .unwrap();
    assert_eq!(checker.cname_at("_dcv.shop.example.com").await.as_deref(), Some("someone-else.example.org"));
    // The person removes theirs: certorder publishes its own, and the order is issued.
    env.dns.remove_cname("_dcv.shop.example.com").await.unwrap();
    env.wait_phase("taken", Phase::Issued).await;
    assert_eq!(sim.purchases(), 1);
}

/// With no `ClusterDNSZone`, a `DNS_CNAME` validation is shown as the CNAME a person creates;
/// once created, the order is issued. A CNAME elsewhere at the name is diagnosed, not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_dns_cname_validation_without_a_zone_tells_a_person_to_create_the_cname() {
    let (env, sim) = ucloud_env().await;
    sim.set_dns_cname(true);
    env.apply(ucloud_dv_order("manual", &["shop.example.com"], "ucloud")).await;
    let validating = env.wait_phase("manual", Phase::DomainValidation).await;
    let sim_order = sim.orders().into_iter().next().unwrap();
    let (name, value) = sim_order.dns_record("shop.example.com", &sim_order.tokens["shop.example.com"]);
    assert!(name.starts_with('_') && name.ends_with(".shop.example.com"), "{name}");
    let want = format!("create CNAME {name} → {value}");
    let message = validating.status.as_ref().unwrap().message.clone().unwrap_or_default();
    assert!(message.contains(&want), "{message}");
    // Someone else's CNAME at the name: the self-check says what is wrong.
    env.dns.set_cname(&name, "elsewhere.example.org").await.unwrap();
    let diagnosed = env
        .wait_for("manual", "the wrong CNAME diagnosed", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.challenges.iter().any(|c| {
                    c.self_check.as_ref().is_some_and(|k| k.diagnosis.contains("is a CNAME to elsewhere.example.org"))
                })
            })
        })
        .await;
    assert_eq!(diagnosed.status.as_ref().unwrap().phase, Phase::DomainValidation);
    // The person creates it as shown: issued.
    env.dns.set_cname(&name, &value).await.unwrap();
    env.wait_phase("manual", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "manual-tls", &["shop.example.com"]).await;
    assert_eq!(sim.purchases(), 1);
}

/// What was bought is fixed: once the vendor's id is recorded, the API server refuses a change of
/// product or provider, and more domains than were bought, and the order stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_purchased_orders_product_cannot_change() {
    let (env, sim) = ucloud_env().await;
    env.apply(ucloud_dv_order("fixed", &["fixed.example.com", "www.fixed.example.com"], "ucloud")).await;
    let bought = env.wait_for("fixed", "the vendor order id", |o| vendor_id(o).is_some()).await;
    assert_eq!(bought.status.as_ref().unwrap().order.as_ref().unwrap().domains_count, Some(2));
    let refusal = |patch: Value| {
        let orders = env.orders();
        async move {
            match orders.patch("fixed", &PatchParams::default(), &Patch::Merge(patch)).await {
                Err(kube::Error::Api(s)) => {
                    assert_eq!(s.code, 422, "{s:?}");
                    s.message
                }
                other => panic!("the API server accepted a change of what was bought: {other:?}"),
            }
        }
    };
    let product = refusal(json!({"spec": {"product": {"name": "TrustAsiaOVG5", "type": "OV"}}})).await;
    assert!(product.contains("spec.product cannot change once the order is purchased"), "{product}");
    assert!(product.contains("create a new CertificateOrder"), "{product}");
    let provider = refusal(json!({"spec": {"providerRef": {"name": "other"}}})).await;
    assert!(provider.contains("spec.providerRef cannot change once the order is purchased"), "{provider}");
    let more =
        refusal(json!({"spec": {"domains": ["fixed.example.com", "www.fixed.example.com", "api.fixed.example.com"]}}))
            .await;
    assert!(more.contains("spec.domains cannot list more names than were bought"), "{more}");

    let now = env.orders().get("fixed").await.unwrap();
    assert_eq!(now.spec, bought.spec, "nothing changed");
    assert_eq!(now.metadata.generation, bought.metadata.generation);
    assert_eq!(sim.purchases(), 1);
    assert_eq!(sim.orders()[0].product, "TrustAsiaDVG5");
}

/// USSL requires a company and an applicant for every order: a DV order that has neither, on a
/// provider without defaults, is stopped before anything is bought, naming the fields to set;
/// given them, by the order or by the provider, it is bought and what was sent shown in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_an_order_lacking_what_ussl_requires_is_refused_before_buying() {
    let env = Env::start().await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    ucloud_provider_with(&env, &sim, "bare", USSL_PRIVATE_KEY, None).await;
    let stalled = |name: &'static str| {
        let env = &env;
        async move {
            env.wait_for(name, "stalled for want of the company and applicant", |o| {
                has_condition(o, "Stalled", "True")
                    && o.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().any(|c| c.type_ == "Stalled" && c.reason == "InfoRequired")
                    })
            })
            .await
        }
    };
    env.apply(ucloud_dv_order("nocompany", &["nocompany.example.com"], "bare")).await;
    let waiting = stalled("nocompany").await;
    let message = waiting.status.as_ref().unwrap().message.clone().unwrap();
    assert!(message.contains("spec.organization (or spec.ucloud.defaults.organization on provider bare)"), "{message}");
    assert!(message.contains("spec.applicant (or spec.ucloud.defaults.applicant on provider bare)"), "{message}");
    assert_eq!(waiting.status.as_ref().unwrap().phase, Phase::Pending);

    // An order naming its company and applicant but not the division and title UCloud requires:
    // nothing is made up for them.
    let mut partial = ucloud_dv_order("partial", &["partial.example.com"], "bare");
    partial["spec"]["organization"] = json!({"name": "ACME Ltd", "address": "1 Century Avenue", "city": "Shanghai",
        "region": "Shanghai", "country": "CN", "phone": "+86 21 5555 0000"});
    partial["spec"]["applicant"] =
        json!({"name": "Li Lei", "phone": "+86 138 0000 0000", "email": "li.lei@example.com"});
    env.apply(partial.clone()).await;
    let waiting = stalled("partial").await;
    let message = waiting.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.contains("spec.organization.division (or spec.ucloud.defaults.organization.division on provider bare)"),
        "{message}"
    );
    assert!(
        message.contains("spec.applicant.title (or spec.ucloud.defaults.applicant.title on provider bare)"),
        "{message}"
    );
    assert_eq!(sim.calls("PurchaseCertificate"), 0, "nothing was bought");
    assert_eq!(sim.purchases(), 0);

    // The order gives them: it is bought and filled in, and the status says whom the CA contacts.
    partial["spec"]["organization"]["division"] = json!("Operations");
    partial["spec"]["applicant"]["title"] = json!("Operations Manager");
    env.apply(partial).await;
    let validating = env.wait_phase("partial", Phase::DomainValidation).await;
    let submitted = validating.status.as_ref().unwrap().order.as_ref().unwrap().submitted.clone().unwrap();
    assert_eq!(
        (submitted.company_name.as_str(), submitted.applicant_name.as_str(), submitted.applicant_email.as_str()),
        ("ACME Ltd", "Li Lei", "li.lei@example.com")
    );
    assert_eq!(sim.purchases(), 1);
    assert_eq!(sim.calls("PurchaseCertificate"), 1);

    // The provider gives them: the other order goes on, untouched, with the provider's defaults.
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    let patch = json!({"spec": {"ucloud": {"defaults": ucloud_defaults()}}});
    providers.patch("bare", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the provider");
    let validating = env.wait_phase("nocompany", Phase::DomainValidation).await;
    let submitted = validating.status.as_ref().unwrap().order.as_ref().unwrap().submitted.clone().unwrap();
    assert_eq!(
        (submitted.company_name.as_str(), submitted.applicant_email.as_str()),
        ("Example Trading Co., Ltd.", "han.meimei@example.com")
    );
    assert_eq!(sim.purchases(), 2);
    let companies: Vec<Option<String>> = sim.orders().into_iter().map(|o| o.company).collect();
    assert!(
        companies.contains(&Some("ACME Ltd".into())) && companies.contains(&Some("Example Trading Co., Ltd.".into()))
    );
}

fn unconfirmed(order: &CertificateOrder) -> bool {
    condition(order, "PurchaseUnconfirmed").is_some_and(|c| c.status == "True")
}

/// A purchase committed by the vendor whose answer is lost (HTTP 502), and listed only seconds
/// later behind a page of other orders: the order says so (condition, Warning event, metric),
/// only looks — every page — and adopts the order once it is listed. Exactly one purchase, and
/// the vendor id is in status before any other step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_lost_purchase_answer_is_looked_for_through_listing_lag_and_never_bought_twice() {
    let (env, sim) = ucloud_env().await;
    sim.set_list_lag(Duration::from_secs(4));
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    // Every status the order goes through.
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watch = {
        use futures::TryStreamExt;
        let statuses = statuses.clone();
        let stream = kube::runtime::watcher(env.orders(), Default::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
            while let Ok(Some(o)) = stream.try_next().await {
                if let Some(s) = o.status {
                    statuses.lock().unwrap().push(s);
                }
            }
        })
    };
    env.apply(ucloud_dv_order("lost", &["lost.example.com"], "ucloud")).await;
    wait_until(|| async { sim.purchases() == 1 }).await;
    // More orders of the brand than one page holds, bought after ours: it is on page 2.
    sim.add_other_orders(120, "TrustAsia", "TrustAsiaDVG5");

    let doubtful = env.wait_for("lost", "PurchaseUnconfirmed", unconfirmed).await;
    let message = &condition(&doubtful, "PurchaseUnconfirmed").unwrap().message;
    for part in
        ["TrustAsia TrustAsiaDVG5 for 1 domain(s), 1 year(s)", "may have been made", "502", "certorder buy-again"]
    {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert_eq!(doubtful.status.as_ref().unwrap().phase, Phase::Pending);
    let (_, metrics) = http_get(env.metrics_port, "/metrics").await.expect("metrics");
    assert!(metrics.contains("certorder_purchases_unconfirmed 1"), "{metrics}");
    wait_until(|| async { !env.events("lost", "PurchaseUnconfirmed").await.is_empty() }).await;

    let validating = env.wait_phase("lost", Phase::DomainValidation).await;
    let bought = sim.orders().into_iter().find(|o| o.domains == ["lost.example.com"]).expect("the vendor order");
    assert_eq!(vendor_id(&validating), Some(bought.id.to_string()), "the lost purchase was adopted");
    assert!(condition(&validating, "PurchaseUnconfirmed").is_none());
    env.publish_challenges(&validating).await;
    env.wait_phase("lost", Phase::Issued).await;
    assert_eq!(sim.purchases(), 1, "exactly one purchase");
    assert_eq!(sim.calls("PurchaseCertificate"), 1);
    assert!(sim.calls("GetCertificateList") >= 3, "looked more than once, reading two pages each time");
    watch.abort();
    // The id was written before anything else was sent for it.
    let statuses = statuses.lock().unwrap();
    let first =
        statuses.iter().find(|s| s.order.as_ref().is_some_and(|o| o.id.is_some())).expect("a status with the id");
    assert!(first.order.as_ref().unwrap().info_digest.is_none(), "{first:?}");
}

/// By default an unconfirmed purchase that is never listed waits for a person: no second
/// purchase on a guess. `certorder buy-again` buys once more; setting status.order.id adopts;
/// `buyAgainAfter` on the provider buys again on its own after that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_an_unconfirmed_purchase_waits_for_a_person_or_the_providers_window() {
    let (env, sim) = ucloud_env().await;
    sim.set_list_lag(Duration::from_secs(3600));
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    env.apply(ucloud_dv_order("doubt", &["doubt.example.com"], "ucloud")).await;
    env.wait_for("doubt", "PurchaseUnconfirmed", unconfirmed).await;
    let looked = sim.calls("GetCertificateList");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sim.purchases(), 1, "no second purchase on a guess");
    assert!(sim.calls("GetCertificateList") > looked, "it keeps looking");
    assert!(unconfirmed(&env.orders().get("doubt").await.unwrap()));

    // A person finds no such order in the console and buys again.
    let out = env.cli(&["buy-again", "doubt", "-n", NS]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let validating = env.wait_phase("doubt", Phase::DomainValidation).await;
    assert_eq!(sim.purchases(), 2, "bought once more for the request");
    let answered = validating.status.as_ref().unwrap().order.as_ref().unwrap().buy_again_answered;
    assert!(answered.is_some(), "the request is marked answered");
    // The command refuses an order that is not in doubt.
    let out = env.cli(&["buy-again", "doubt", "-n", NS]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no unconfirmed purchase"));

    // A person who finds the order in the console sets its id.
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    env.apply(ucloud_dv_order("found", &["found.example.com"], "ucloud")).await;
    env.wait_for("found", "PurchaseUnconfirmed", unconfirmed).await;
    let id = sim.orders().iter().map(|o| o.id).max().unwrap().to_string();
    env.orders()
        .patch_status("found", &PatchParams::default(), &Patch::Merge(json!({"status": {"order": {"id": id}}})))
        .await
        .unwrap();
    let validating = env.wait_phase("found", Phase::DomainValidation).await;
    assert_eq!(vendor_id(&validating), Some(id.clone()));
    assert_eq!(sim.purchases(), 3);

    // Two orders holding one vendor order: both stop and say so.
    env.apply(ucloud_dv_order("twin", &["twin.example.com"], "ucloud")).await;
    // Settled in validation first: a person's edit that lands between the reconcile's write of the
    // vendor id and its final status write of the same pass is lost (see the issue 15 report).
    env.wait_phase("twin", Phase::DomainValidation).await;
    env.orders()
        .patch_status("twin", &PatchParams::default(), &Patch::Merge(json!({"status": {"order": {"id": id}}})))
        .await
        .unwrap();
    let twin = env
        .wait_for("twin", "VendorOrderShared", |o| {
            condition(o, "Stalled").is_some_and(|c| c.reason == "VendorOrderShared")
        })
        .await;
    assert!(condition(&twin, "Stalled").unwrap().message.contains(&format!("{NS}/found")));

    // A provider that allows buying again after a window does so on its own.
    ucloud_provider(&env, &sim, "ucloud-window", USSL_PRIVATE_KEY).await;
    let mut provider = env.api.object("certorder.io", "clustercertificateproviders", None, "ucloud-window").unwrap();
    provider["spec"]["ucloud"]["buyAgainAfter"] = json!("2s");
    env.apply(json!({"apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider",
        "metadata": {"name": "ucloud-window"}, "spec": provider["spec"]}))
        .await;
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    let purchases = sim.purchases();
    env.apply(ucloud_dv_order("window", &["window.example.com"], "ucloud-window")).await;
    env.wait_phase("window", Phase::DomainValidation).await;
    // It was in doubt on the way (the window is short: the Warning event tells, not a snapshot).
    wait_until(|| async { !env.events("window", "PurchaseUnconfirmed").await.is_empty() }).await;
    assert_eq!(sim.purchases(), purchases + 2, "bought again once, after the window");
}

/// A certificate that does not chain to a trusted root — here one from another CA over our own
/// key — is never installed: the order says why and keeps the Secret untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_certificate_from_an_untrusted_ca_is_never_installed() {
    let (env, sim) = ucloud_env().await;
    sim.issue_from_another_ca(true);
    env.apply(ucloud_dv_order("rogue", &["rogue.example.com"], "ucloud")).await;
    let validating = env.wait_phase("rogue", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    let refused = env
        .wait_for("rogue", "the download refused", |o| {
            o.status.as_ref().and_then(|s| s.last_failure.as_deref()).is_some_and(|f| f.contains("trusted CA"))
        })
        .await;
    let failure = refused.status.as_ref().unwrap().last_failure.clone().unwrap();
    assert!(
        failure.contains("the downloaded certificate was refused: chain does not lead to a trusted CA"),
        "{failure}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.secrets().get_opt("rogue-tls").await.unwrap().is_none(), "nothing was installed");
    assert_ne!(env.orders().get("rogue").await.unwrap().status.unwrap().phase, Phase::Issued);
}

/// Order B's purchase is committed but answered slowly; order A, in another watched namespace,
/// lost its own answer and looks meanwhile. A must not adopt B's (older) order: lookups wait for
/// purchase calls in flight, and one provider (one lock, one claims map) serves every namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_lookup_never_adopts_an_order_whose_purchase_is_still_being_answered() {
    const OTHER: &str = "certorder-system";
    let mut env = Env::start_with_controller(false).await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    // A second provider of the same UCloud account (another team's defaults, say): the vendor sees
    // one account, so its orders and the first provider's share one purchase lock and one set of claims.
    ucloud_provider(&env, &sim, "ucloud-team-b", USSL_PRIVATE_KEY).await;
    let config = certorder::controller::Config {
        watch_namespaces: vec![NS.into(), OTHER.into()],
        ..test_config(env.dns.addr(), env.metrics_port)
    };
    env.controller = Some(spawn_controller(&env.client, config));

    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::SlowAnswer(Duration::from_secs(3)));
    env.apply(ucloud_dv_order("slow", &["slow.example.com"], "ucloud")).await;
    wait_until(|| async { sim.purchases() == 1 }).await;
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    let mut hasty = ucloud_dv_order("hasty", &["hasty.example.com"], "ucloud-team-b");
    hasty["metadata"]["namespace"] = json!(OTHER);
    let others: Api<CertificateOrder> = Api::namespaced(env.client.clone(), OTHER);
    others.patch("hasty", &PatchParams::apply("e2e-user"), &Patch::Apply(hasty)).await.expect("apply order");

    let slow = env.wait_phase("slow", Phase::DomainValidation).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let hasty = loop {
        let o = others.get("hasty").await.unwrap();
        if o.status.as_ref().is_some_and(|s| s.phase == Phase::DomainValidation) {
            break o;
        }
        assert!(tokio::time::Instant::now() < deadline, "hasty: {:?}", o.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sim.purchases(), 2);
    assert_ne!(vendor_id(&slow), vendor_id(&hasty), "each order holds its own vendor order");
    let first = sim.orders().iter().map(|o| o.id).min().unwrap().to_string();
    assert_eq!(vendor_id(&slow), Some(first), "the slow order keeps the one it bought");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_restart_right_after_the_purchase_call_buys_only_once() {
    let (mut env, sim) = ucloud_env().await;
    sim.set_download_shape(testbed::ussl::DownloadShape::Zip);
    // The purchase is made at once but answered late: the operator is stopped while it waits.
    sim.set_purchase_delay(Duration::from_secs(30));
    env.apply(ucloud_dv_order("crash", &["crash.example.org"], "ucloud")).await;
    wait_until(|| async { sim.purchases() == 1 }).await;
    env.restart_controller().await;
    sim.set_purchase_delay(Duration::ZERO);

    // The intent was recorded before the purchase call; the id never was.
    let before = env.orders().get("crash").await.unwrap();
    let vendor = before.status.as_ref().unwrap().order.clone().unwrap();
    assert!(vendor.name.starts_with("certorder-"), "{vendor:?}");
    assert!(vendor.purchase_requested_time.is_some());

    let validating = env.wait_phase("crash", Phase::DomainValidation).await;
    assert_eq!(
        vendor_id(&validating),
        Some(sim.orders()[0].id.to_string()),
        "the order bought before the restart was adopted"
    );
    env.publish_challenges(&validating).await;
    env.wait_phase("crash", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "crash-tls", &["crash.example.org"]).await;
    assert_eq!(sim.purchases(), 1, "exactly one purchase");
    assert!(vendor_id(&before).is_none() || vendor_id(&before) == vendor_id(&validating));
    assert_eq!(sim.calls("PurchaseCertificate"), 1);
    assert_eq!(sim.calls("GetCertificateList"), 1, "looked up once: after the restart, before buying again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_gateway_faults_are_ridden_out_and_bad_credentials_stop_the_order() {
    let (env, sim) = ucloud_env().await;
    // 150 and a proxy's page leave the purchase in doubt (the gateway may have passed it on);
    // the simulator made none, which a second of looking shows.
    allow_buying_again(&env, "ucloud", "1s").await;
    // Rate limited twice, unavailable once, then a proxy's HTML page.
    sim.fail_next(2, testbed::ussl::Fault::RetCode(153));
    sim.fail_next(1, testbed::ussl::Fault::RetCode(150));
    sim.fail_next(1, testbed::ussl::Fault::Garbage);
    env.apply(ucloud_dv_order("flaky", &["flaky.example.com"], "ucloud")).await;
    let validating = env.wait_phase("flaky", Phase::DomainValidation).await;
    assert_eq!(sim.pending_faults(), 0, "every fault was served");
    let failure = validating.status.as_ref().unwrap().last_failure.clone().unwrap_or_default();
    assert!(failure.contains("UCloud") && failure.contains("retrying"), "{failure}");
    env.publish_challenges(&validating).await;
    env.wait_phase("flaky", Phase::Issued).await;
    assert_eq!(sim.purchases(), 1);

    // A provider whose private key is wrong: the order stops and says what to fix.
    const WRONG_KEY: &str = "wrong-private-key-e2e-7f3a9c";
    ucloud_provider(&env, &sim, "ucloud-bad", WRONG_KEY).await;
    env.apply(ucloud_dv_order("badcreds", &["bad.example.com"], "ucloud-bad")).await;
    let failed = env.wait_phase("badcreds", Phase::Failed).await;
    let message = failed.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.contains("UCloud refused the credentials (RetCode 171): check PublicKey/PrivateKey in Secret certorder-system/ucloud-bad-credentials"),
        "{message}"
    );
    assert!(has_condition(&failed, "Stalled", "True"));
    assert_eq!(sim.purchases(), 1, "nothing bought with bad credentials");
    // The keys appear nowhere: not in the operator's logs (UCloud requests were logged), status or events.
    let logs = captured_logs();
    assert!(logs.contains("UCloud request"), "request logging was on");
    for secret in [WRONG_KEY, USSL_PRIVATE_KEY] {
        assert!(!logs.contains(secret), "a private key appeared in the logs");
        assert!(!serde_json::to_string(&failed).unwrap().contains(secret));
    }
    // The event follows the status write: wait for it.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), NS);
    wait_until(|| async {
        let all = events.list(&Default::default()).await.unwrap();
        all.items.iter().any(|e| e.note.as_deref().is_some_and(|m| m.contains("RetCode 171")))
    })
    .await;
    let all = events.list(&Default::default()).await.unwrap();
    assert!(!serde_json::to_string(&all).unwrap().contains(WRONG_KEY));
}

// ---------------------------------------------------------------------------------------------
// HTTP file validation, through the testbed's cluster emulation: the operator publishes the file,
// the emulated kubelet runs the real `certorder solver` for the solver Pod, the emulated ingress
// controller routes by Host and path, and the local CA fetches the file over plain HTTP.

/// An `Env` whose operator (self-check and local CA) fetches validation files from the emulated
/// ingress controller's front door, where the test DNS server points the names.
struct HttpEnv {
    env: Env,
    cluster: testbed::cluster::Cluster,
}

impl std::ops::Deref for HttpEnv {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl HttpEnv {
    async fn start(names: &[&str]) -> HttpEnv {
        let mut env = Env::start_with_controller(false).await;
        let cluster = testbed::cluster::Cluster::start(env.client.clone(), env!("CARGO_BIN_EXE_certorder"))
            .await
            .expect("cluster emulation");
        for name in names {
            env.dns.set_a(name, std::net::Ipv4Addr::LOCALHOST).await.expect("set A");
        }
        // The operator fetches validation files through the emulation's front door.
        let config = certorder::controller::Config {
            http_validation_port: cluster.port(),
            https_validation_port: cluster.https_port(),
            ..test_config(env.dns.addr(), env.metrics_port)
        };
        env.controller = Some(spawn_controller(&env.client, config));
        HttpEnv { env, cluster }
    }

    fn ingresses(&self) -> Api<k8s_openapi::api::networking::v1::Ingress> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// A user's Ingress of the emulated class: `host` with `paths` (path, type, service).
    async fn user_ingress(&self, name: &str, host: &str, paths: &[(&str, &str, &str)], annotations: Value) {
        let paths: Vec<Value> = paths
            .iter()
            .map(|(path, type_, service)| json!({"path": path, "pathType": type_, "backend": {"service": {"name": service, "port": {"number": 80}}}}))
            .collect();
        let ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS, "annotations": annotations},
            "spec": {"ingressClassName": testbed::cluster::INGRESS_CLASS, "rules": [{"host": host, "http": {"paths": paths}}]},
        }))
        .unwrap();
        self.ingresses().create(&PostParams::default(), &ingress).await.expect("create the user's Ingress");
        wait_until(|| async { self.cluster.routes_host(host) }).await;
    }

    /// `Kind/name` of every ConfigMap, Pod, Service and Ingress labelled for `order`.
    async fn published(&self, order: &str) -> Vec<String> {
        let lp = kube::api::ListParams::default().labels(&format!("certorder.io/order={order}"));
        let mut names = Vec::new();
        macro_rules! collect {
            ($kind:ty) => {
                for o in Api::<$kind>::namespaced(self.client.clone(), NS).list(&lp).await.unwrap() {
                    names.push(format!("{}/{}", stringify!($kind).rsplit("::").next().unwrap(), o.name_any()));
                }
            };
        }
        collect!(k8s_openapi::api::core::v1::ConfigMap);
        collect!(k8s_openapi::api::core::v1::Pod);
        collect!(k8s_openapi::api::core::v1::Service);
        collect!(k8s_openapi::api::networking::v1::Ingress);
        names
    }

    /// Whether the local CA fetched `url`'s path for its host, and what it got.
    fn ca_fetches(&self, host: &str) -> Vec<u16> {
        self.cluster
            .served()
            .into_iter()
            .filter(|s| {
                s.host == host
                    && s.user_agent == certorder::provider::local::CA_AGENT
                    && s.path == "/.well-known/pki-validation/fileauth.txt"
            })
            .map(|s| s.status)
            .collect()
    }
}

fn with_http(mut order: Value, provider: &str, http: Value) -> Value {
    order["spec"]["providerRef"]["name"] = json!(provider);
    order["spec"]["domainValidation"] = json!({"method": "HTTP", "http": http});
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_dv_and_ov_orders_are_issued_through_the_emulated_ingress_and_leave_nothing_behind() {
    let env =
        HttpEnv::start(&["web.example.com", "www.web.example.com", "shop.example.com", "www.shop.example.com"]).await;
    env.provider("auto", "Automatic").await;
    env.apply(letter_secret()).await;
    // The OV order adds its paths to the user's own Ingress, which serves the shop.
    env.cluster.serve_static(
        NS,
        "shop-web",
        testbed::cluster::StaticBackend::html("<!doctype html><title>shop</title>"),
    );
    env.user_ingress("shop-site", "shop.example.com", &[("/", "Prefix", "shop-web")], json!({})).await;
    let users_before = env.ingresses().get("shop-site").await.unwrap().spec;

    env.apply(with_http(
        dv_order("web", &["web.example.com", "www.web.example.com"], "auto"),
        "auto",
        json!({"ingressClassName": testbed::cluster::INGRESS_CLASS}),
    ))
    .await;
    env.apply(with_http(ov_order("acme", "ACME Ltd"), "auto", json!({"ingressName": "shop-site"}))).await;

    let validating = env
        .wait_for("web", "HTTP challenges published", |o| {
            o.status.as_ref().is_some_and(|s| s.published.is_some() && !s.challenges.is_empty())
        })
        .await;
    let challenges = &validating.status.as_ref().unwrap().challenges;
    assert_eq!(challenges[0].target, "http://web.example.com/.well-known/pki-validation/fileauth.txt");
    let published = env.published("web").await;
    for kind in ["ConfigMap", "Pod", "Service", "Ingress"] {
        assert!(published.contains(&format!("{kind}/certorder-solver-web")), "{published:?}");
    }
    // The route's path type is one ingress-nginx ≥ 1.12 and GCE accept (the testbed's API server
    // refuses the others for those classes, as their admission does).
    let route = env.ingresses().get("certorder-solver-web").await.unwrap();
    let rules = route.spec.unwrap().rules.unwrap();
    assert_eq!(rules[0].http.as_ref().unwrap().paths[0].path_type, "ImplementationSpecific");
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        Api::namespaced(env.client.clone(), NS).get("certorder-solver-web").await.unwrap();
    assert_eq!(cm.owner_references()[0].name, "web");
    assert_eq!(cm.data.unwrap()["web.example.com_fileauth.txt"], challenges[0].expected_value, "exact, no newline");

    for name in ["web", "acme"] {
        env.wait_phase(name, Phase::Issued).await;
    }
    assert_verified_secret(&env, "web-tls", &["web.example.com", "www.web.example.com"], "auto").await;
    assert_verified_secret(&env, "acme-tls", &["shop.example.com", "www.shop.example.com"], "auto").await;
    // The local CA fetched every file itself through the front door and got it.
    for host in ["web.example.com", "www.web.example.com", "shop.example.com", "www.shop.example.com"] {
        assert!(env.ca_fetches(host).contains(&200), "the CA fetched {host}: {:?}", env.cluster.served());
    }
    assert!(env.cluster.solver_starts() >= 2);

    // Afterwards nothing the orders published is left, and the user's Ingress is as it was.
    wait_until(|| async { env.published("web").await.is_empty() && env.published("acme").await.is_empty() }).await;
    wait_until(|| async { env.ingresses().get("shop-site").await.unwrap().spec == users_before }).await;
    wait_until(|| async { env.cluster.running_solvers() == 0 }).await;
    for name in ["web", "acme"] {
        let order = env.orders().get(name).await.unwrap();
        assert!(order.status.as_ref().unwrap().published.is_none(), "{name}");
        assert!(order.status.as_ref().unwrap().challenges.is_empty(), "{name}");
    }
}

/// Starts one HTTP order whose file the CA cannot get as it should, and waits for the diagnosis.
async fn diagnosed(env: &HttpEnv, order: Value, diagnosis: &str) -> certorder::api::SelfCheck {
    let name = order["metadata"]["name"].as_str().unwrap().to_string();
    let host = order["spec"]["domains"][0].as_str().unwrap().to_string();
    env.apply(order).await;
    let failing = env
        .wait_for(&name, diagnosis, |o| {
            o.status.as_ref().is_some_and(|s| {
                s.challenges.iter().any(|c| c.self_check.as_ref().is_some_and(|c| c.diagnosis.starts_with(diagnosis)))
            })
        })
        .await;
    assert!(!failing.status.unwrap().challenges[0].self_check.as_ref().unwrap().passed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !env.events(&name, "SelfCheckFailed").await.iter().any(|n| n.contains(diagnosis)) {
        let all = env.events(&name, "SelfCheckFailed").await;
        assert!(tokio::time::Instant::now() < deadline, "no SelfCheckFailed event saying {diagnosis:?}: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The CA has looked too (after the route was in place), and the order does not advance.
    let fetches = env.ca_fetches(&host).len();
    while env.ca_fetches(&host).len() <= fetches {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the local CA never fetched {host}: {:?}",
            env.cluster.served()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let order = env.orders().get(&name).await.unwrap();
    let status = order.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::DomainValidation, "{status:?}");
    assert!(status.certificate.is_none());
    assert!(env.secrets().get_opt(&format!("{name}-tls")).await.unwrap().is_none());
    let domains = condition(&order, "DomainsVerified").unwrap();
    assert_eq!((domains.status.as_str(), domains.reason.as_str()), ("False", "SelfCheckFailing"));
    assert!(domains.message.contains(diagnosis), "{}", domains.message);
    let check = status.challenges[0].self_check.clone().unwrap();
    assert!(check.diagnosis.starts_with(diagnosis), "{check:?}");
    check
}

/// ingress-nginx redirects plain HTTP to HTTPS for hosts an Ingress has TLS for, and certorder's
/// paths added to that Ingress are redirected too: the CA follows the redirect (Baseline
/// Requirements 3.2.2.4.18) and takes the file over HTTPS, whatever the certificate; so do the
/// self-check and the local CA. A redirect to another port is what the CA refuses, and is
/// diagnosed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_validation_follows_a_redirect_to_https_as_the_ca_does() {
    let env = HttpEnv::start(&["secure.example.com", "odd.example.com"]).await;
    env.provider("auto", "Automatic").await;
    env.cluster.serve_static(NS, "secure-web", testbed::cluster::StaticBackend::html("<html>secure</html>"));
    let ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
        "metadata": {"name": "secure", "namespace": NS},
        "spec": {"ingressClassName": testbed::cluster::INGRESS_CLASS,
                 "tls": [{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
                 "rules": [{"host": "secure.example.com", "http": {"paths": [
                     {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "secure-web", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap();
    env.ingresses().create(&PostParams::default(), &ingress).await.unwrap();
    wait_until(|| async { env.cluster.routes_host("secure.example.com") }).await;
    env.apply(with_http(dv_order("secure", &["secure.example.com"], "auto"), "auto", json!({"ingressName": "secure"})))
        .await;
    let issued = env.wait_phase("secure", Phase::Issued).await;
    assert!(issued.status.as_ref().unwrap().certificate.is_some());
    let served = env.cluster.served();
    let file = |s: &&testbed::cluster::Served| {
        s.host == "secure.example.com" && s.path == "/.well-known/pki-validation/fileauth.txt"
    };
    for agent in [certorder::provider::local::CA_AGENT, certorder::validation::http::SELF_CHECK_AGENT] {
        let fetches: Vec<_> = served.iter().filter(file).filter(|s| s.user_agent == agent).collect();
        assert!(fetches.iter().any(|s| !s.https && s.status == 308), "{agent} was redirected: {fetches:?}");
        assert!(fetches.iter().any(|s| s.https && s.status == 200), "{agent} took the file over HTTPS: {fetches:?}");
    }

    // A site that sends the CA to port 8443: refused by the CA, and diagnosed by certorder.
    env.cluster.serve_static(
        NS,
        "odd-web",
        testbed::cluster::StaticBackend::redirect(
            302,
            "https://odd.example.com:8443/.well-known/pki-validation/fileauth.txt",
        ),
    );
    env.user_ingress(
        "odd",
        "odd.example.com",
        &[("/.well-known/pki-validation/fileauth.txt", "ImplementationSpecific", "odd-web")],
        json!({}),
    )
    .await;
    let order =
        with_http(dv_order("odd", &["odd.example.com"], "auto"), "auto", json!({"ingressClassName": "other-class"}));
    let check = diagnosed(&env, order, "redirected to https://odd.example.com:8443/").await;
    assert_eq!(check.status_code, Some(302));
    assert!(check.diagnosis.contains("only to port 80 (http) or 443 (https)"), "{check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_validation_of_content_with_a_trailing_newline_is_diagnosed() {
    let env = HttpEnv::start(&["legacy.example.com"]).await;
    env.provider("auto", "Automatic").await;
    // The operator's Ingress goes to a class this cluster does not serve; the user's own file
    // server answers the path, with a newline after the value as editors write it.
    env.user_ingress(
        "legacy",
        "legacy.example.com",
        // ImplementationSpecific: ingress-nginx ≥ 1.12 refuses an Exact path with a dot.
        &[("/.well-known/pki-validation/fileauth.txt", "ImplementationSpecific", "legacy-files")],
        json!({}),
    )
    .await;
    let order = with_http(
        dv_order("legacy", &["legacy.example.com"], "auto"),
        "auto",
        json!({"ingressClassName": "elsewhere"}),
    );
    env.apply(order.clone()).await;
    let listed =
        env.wait_for("legacy", "challenges", |o| o.status.as_ref().is_some_and(|s| !s.challenges.is_empty())).await;
    let value = listed.status.unwrap().challenges[0].expected_value.clone();
    env.cluster.serve_static(
        NS,
        "legacy-files",
        testbed::cluster::StaticBackend::text(format!("{value}\n").as_bytes()),
    );
    let check = diagnosed(&env, order, "content has a trailing newline").await;
    assert_eq!(check.status_code, Some(200));
    assert_eq!(check.content_length, Some(value.len() as u64 + 1));
    assert!(check.seen.ends_with("\\n"), "{}", check.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_validation_of_a_host_that_routes_elsewhere_is_diagnosed() {
    let env = HttpEnv::start(&["brochure.example.com"]).await;
    env.provider("auto", "Automatic").await;
    env.cluster.serve_static(
        NS,
        "brochure-web",
        testbed::cluster::StaticBackend::html("<!DOCTYPE html><html><body>Welcome</body></html>"),
    );
    env.user_ingress("brochure", "brochure.example.com", &[("/", "Prefix", "brochure-web")], json!({})).await;
    let order = with_http(
        dv_order("brochure", &["brochure.example.com"], "auto"),
        "auto",
        json!({"ingressClassName": "elsewhere"}),
    );
    let check = diagnosed(&env, order, "served by another backend (got HTML").await;
    assert_eq!(check.status_code, Some(200));
    assert!(check.seen.starts_with("<!DOCTYPE html>"), "{}", check.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_with_http_validation_that_gets_past_admission_fails_with_a_clear_message() {
    let env = HttpEnv::start(&[]).await;
    env.provider("auto", "Automatic").await;
    // An API server that did not check the CRD's rules (an older one, say): drop them.
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let mut crd = crds.get("certificateorders.certorder.io").await.unwrap();
    for version in &mut crd.spec.versions {
        if let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        {
            spec.x_kubernetes_validations = None;
        }
    }
    crds.replace("certificateorders.certorder.io", &PostParams::default(), &crd).await.unwrap();
    let order = with_http(dv_order("wild", &["example.com", "*.example.com"], "auto"), "auto", json!({}));
    env.apply(order).await;
    let failed = env.wait_phase("wild", Phase::Failed).await;
    let message = failed.status.as_ref().unwrap().message.clone().unwrap();
    assert!(message.contains("*.example.com is a wildcard name, which can only be validated by DNS"), "{message}");
    assert_eq!(condition(&failed, "Ready").unwrap().reason, "InvalidSpec");
    assert!(env.published("wild").await.is_empty(), "nothing published for a refused order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_validation_through_a_gateway_httproute_is_issued_and_the_route_removed() {
    let env = HttpEnv::start(&["gw.example.com"]).await;
    // The Gateway API's HTTPRoute, as its CRD installs it (schema left open here).
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
        "spec": {
            "group": "gateway.networking.k8s.io",
            "names": {"kind": "HTTPRoute", "plural": "httproutes", "singular": "httproute", "listKind": "HTTPRouteList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(env.client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("HTTPRoute CRD");
    env.provider("auto", "Automatic").await;
    let order = with_http(
        dv_order("gw", &["gw.example.com"], "auto"),
        "auto",
        json!({"gatewayRef": {"name": "public", "namespace": "infra", "sectionName": "http"}}),
    );
    env.apply(order).await;
    let gvk = kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<kube::api::DynamicObject> =
        Api::namespaced_with(env.client.clone(), NS, &kube::api::ApiResource::from_gvk_with_plural(&gvk, "httproutes"));
    let mut route = None;
    wait_until(|| async { routes.get_opt("certorder-solver-gw").await.unwrap().is_some() }).await;
    if let Some(r) = routes.get_opt("certorder-solver-gw").await.unwrap() {
        route = Some(r);
    }
    let route = route.unwrap();
    assert_eq!(route.data["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(route.data["spec"]["hostnames"], json!(["gw.example.com"]));
    assert!(
        env.published("gw").await.iter().all(|o| !o.starts_with("Ingress/")),
        "no Ingress when a Gateway is asked for"
    );
    env.wait_phase("gw", Phase::Issued).await;
    assert!(env.ca_fetches("gw.example.com").contains(&200), "{:?}", env.cluster.served());
    wait_until(|| async {
        routes.get_opt("certorder-solver-gw").await.unwrap().is_none() && env.published("gw").await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_http_order_mid_validation_removes_its_paths_from_the_users_ingress() {
    // half.example.com has no A record: the order stays in validation, saying why.
    let env = HttpEnv::start(&[]).await;
    env.provider("auto", "Automatic").await;
    env.cluster.serve_static(NS, "half-web", testbed::cluster::StaticBackend::html("<html>half</html>"));
    env.user_ingress("half-site", "half.example.com", &[("/", "Prefix", "half-web")], json!({})).await;
    let before = env.ingresses().get("half-site").await.unwrap().spec;
    env.apply(with_http(dv_order("half", &["half.example.com"], "auto"), "auto", json!({"ingressName": "half-site"})))
        .await;
    let stuck = env
        .wait_for("half", "name does not resolve", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.challenges
                    .iter()
                    .any(|c| c.self_check.as_ref().is_some_and(|c| c.diagnosis.starts_with("name does not resolve")))
            })
        })
        .await;
    assert_eq!(stuck.status.as_ref().unwrap().phase, Phase::DomainValidation);
    let patched = env.ingresses().get("half-site").await.unwrap().spec;
    assert_ne!(patched, before, "the validation path was added to the user's Ingress");
    assert!(!env.published("half").await.is_empty());

    // A solver Pod that goes away (a node drained, say) comes back: nothing else recreates a bare Pod.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), NS);
    let first = pods.get("certorder-solver-half").await.unwrap().uid();
    pods.delete("certorder-solver-half", &DeleteParams::default()).await.expect("delete the solver Pod");
    wait_until(|| async { pods.get_opt("certorder-solver-half").await.unwrap().is_some_and(|p| p.uid() != first) })
        .await;

    env.orders().delete("half", &DeleteParams::default()).await.expect("delete order");
    wait_until(|| async { env.orders().get_opt("half").await.unwrap().is_none() }).await;
    wait_until(|| async { env.published("half").await.is_empty() }).await;
    assert_eq!(env.ingresses().get("half-site").await.unwrap().spec, before, "the user's Ingress is as it was");
    wait_until(|| async { env.cluster.running_solvers() == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_ov_order_goes_through_template_letter_rejection_resubmission_and_file_validation() {
    let env = HttpEnv::start(&["shop.example.com", "www.shop.example.com"]).await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    // The simulator fetches validation files the way a CA does: through the cluster's front door.
    sim.set_http_target(std::net::SocketAddr::from(([127, 0, 0, 1], env.cluster.port())));
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    let order = |company: &str| {
        let mut o = with_http(
            ov_order("acme", company),
            "ucloud",
            json!({"ingressClassName": testbed::cluster::INGRESS_CLASS}),
        );
        o["spec"]["product"] = json!({"brand": "DigiCert", "name": "SecureSiteOV", "type": "OV"});
        o
    };
    env.apply(order("ACME Ltd")).await;

    // Bought and filled in; the vendor's letter template is offered next to the order.
    let waiting = env
        .wait_for("acme", "the letter template offered", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("letter template is in ConfigMap acme-letter-template"))
        })
        .await;
    assert_eq!(waiting.status.as_ref().unwrap().phase, Phase::InfoSubmitted);
    assert!(
        waiting.status.as_ref().unwrap().message.as_deref().unwrap().contains("acme-letter"),
        "names the letter Secret"
    );
    // USSL takes only the letter: the other kind of attachment is for the console.
    let waiting_message = waiting.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        waiting_message.contains("application form, service agreement, business licence, ID card"),
        "{waiting_message}"
    );
    // The order names no division or title: the provider's defaults were sent, nothing made up.
    let submitted = waiting.status.as_ref().unwrap().order.as_ref().unwrap().submitted.clone().unwrap();
    assert_eq!(
        (submitted.company_name.as_str(), submitted.applicant_email.as_str()),
        ("ACME Ltd", "li.lei@example.com")
    );
    let id = sim.orders()[0].id;
    assert_eq!(sim.orders()[0].state, "PENDING_CONFIRM_LETTER");
    let template: k8s_openapi::api::core::v1::ConfigMap =
        Api::namespaced(env.client.clone(), NS).get("acme-letter-template").await.unwrap();
    let data = template.binary_data.clone().unwrap();
    assert_eq!(data[&format!("confirm-letter-{id}.docx")].0, testbed::ussl::letter_template_bytes(id));
    assert_eq!(template.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("certorder"));
    assert_eq!(template.labels().get("certorder.io/order").map(String::as_str), Some("acme"));
    assert_eq!(template.owner_references()[0].name, "acme");
    assert_eq!(sim.calls("DownloadConfirmLetterTemp"), 1, "fetched once");

    // The user stores the stamped letter: it is uploaded and the CA reviews.
    env.apply(letter_secret()).await;
    let in_review = env.wait_phase("acme", Phase::OrganizationReview).await;
    assert!(has_condition(&in_review, "DocumentsUploaded", "True"));
    assert!(sim.orders()[0].letter.as_deref().unwrap().starts_with(b"%PDF"));
    // A person must approve the CA's domain-confirmation email: the status says where it went.
    let review_message = in_review.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        review_message.contains("domain confirmation to the order's contact li.lei@example.com"),
        "{review_message}"
    );
    assert!(review_message.contains("a person must approve it"), "{review_message}");

    // The CA rejects it, with a reason the status shows.
    sim.reject(id, "the company name does not match the business licence").unwrap();
    let rejected = env.wait_phase("acme", Phase::Rejected).await;
    assert!(
        rejected.status.as_ref().unwrap().message.as_deref().unwrap().contains("does not match the business licence")
    );
    assert_eq!(rejected.status.as_ref().unwrap().order.as_ref().unwrap().state.as_deref(), Some("REJECTED"));
    assert!(has_condition(&rejected, "Stalled", "True"));

    // The user fixes the company name: the info is sent again, the CA reviews again and approves.
    env.apply(order("ACME Limited")).await;
    env.wait_for("acme", "resubmitted for review", |o| {
        o.status.as_ref().is_some_and(|s| s.phase == Phase::OrganizationReview && s.observed_generation == Some(2))
    })
    .await;
    assert_eq!(sim.orders()[0].company.as_deref(), Some("ACME Limited"));
    assert_eq!(sim.orders()[0].submissions, 2);
    sim.approve(id).unwrap();

    // File validation: the operator publishes the files, the simulator fetches them through the ingress.
    let issued = env.wait_phase("acme", Phase::Issued).await;
    assert!(has_condition(&issued, "OrganizationVerified", "True"));
    assert_ussl_secret(&env, &sim, "acme-tls", &["shop.example.com", "www.shop.example.com"]).await;
    assert_eq!(sim.orders()[0].method, "FILE");
    assert_eq!(sim.orders()[0].state, "COMPLETED");
    assert_eq!(sim.purchases(), 1);
    assert_eq!(sim.calls("DownloadConfirmLetterTemp"), 1);
}

/// The account's key is rotated while an order waits for domain validation: polls are refused
/// (RetCode 171), which does not end the order — the provider shows Ready=False with the reason —
/// and once the credentials Secret holds the new key the order carries on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_refused_credentials_on_a_poll_wait_for_the_secret_to_be_fixed() {
    const NEW_KEY: &str = "rotated-private-key-e2e-5d1c";
    let (env, sim) = ucloud_env().await;
    env.apply(ucloud_dv_order("rotated", &["rotated.example.com"], "ucloud")).await;
    let validating = env.wait_phase("rotated", Phase::DomainValidation).await;
    sim.rotate_private_key(NEW_KEY);
    env.publish_challenges(&validating).await;
    let refused = env
        .wait_for("rotated", "a refused poll", |o| {
            o.status.as_ref().and_then(|s| s.last_failure.as_deref()).is_some_and(|f| f.contains("RetCode 171"))
        })
        .await;
    assert_ne!(refused.status.as_ref().unwrap().phase, Phase::Failed, "a refused poll does not end a bought order");
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    wait_until(|| async {
        let p = providers.get("ucloud").await.unwrap();
        p.status
            .unwrap_or_default()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.message.contains("RetCode 171"))
    })
    .await;

    // The person puts the new key in the Secret; nothing else changes.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "certorder-system");
    let patch = json!({"stringData": {"PrivateKey": NEW_KEY}});
    secrets.patch("ucloud-credentials", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    env.wait_phase("rotated", Phase::Issued).await;
    assert_eq!(sim.purchases(), 1);
    wait_until(|| async {
        let p = providers.get("ucloud").await.unwrap();
        p.status.unwrap_or_default().conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    assert!(!captured_logs().contains(NEW_KEY), "the key never appears in the logs");
}

/// `rotationPolicy: Never`: a renewal keeps the key and still gets a new certificate — a reissue,
/// sent exactly once per renewal — from the built-in CA and from UCloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_with_rotation_policy_never_reissues_once_with_the_same_key() {
    let (env, sim) = ucloud_env().await;
    env.provider("auto", "Automatic").await;
    let mut local = dv_order("keep-local", &["keep.example.com"], "auto");
    local["spec"]["privateKey"] = json!({"rotationPolicy": "Never"});
    let mut vendor = ucloud_dv_order("keep-ucloud", &["keep.example.org"], "ucloud");
    vendor["spec"]["privateKey"] = json!({"rotationPolicy": "Never"});
    for order in [local, vendor] {
        let name = order["metadata"]["name"].as_str().unwrap().to_string();
        env.apply(order).await;
        let validating = env.wait_phase(&name, Phase::DomainValidation).await;
        env.publish_challenges(&validating).await;
        let first = env.wait_phase(&name, Phase::Issued).await.status.unwrap().certificate.unwrap();
        let reissues = sim.calls("ReIssueCertificateCSRInfo");

        let out = env.cli(&["renew", &name, "-n", NS]);
        assert!(out.status.success(), "renew: {}", String::from_utf8_lossy(&out.stderr));
        // The CA validates the domains again: publish what it asks for until the new certificate is in.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let renewed = loop {
            let o = env.orders().get(&name).await.unwrap();
            let s = o.status.clone().unwrap();
            if s.phase == Phase::Issued && s.certificate.as_ref().is_some_and(|c| c.serial != first.serial) {
                break o;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} was not renewed: {s:?}");
            if !s.challenges.is_empty() {
                env.publish_challenges(&o).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let status = renewed.status.unwrap();
        let second = status.certificate.unwrap();
        assert_eq!(second.key_fingerprint, first.key_fingerprint, "{name}: the key is kept");
        assert_eq!(status.order.unwrap().issuances, 2, "{name}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later = env.orders().get(&name).await.unwrap().status.unwrap();
        assert_eq!(later.certificate.unwrap().serial, second.serial, "{name}: answered once, nothing more");
        if name == "keep-ucloud" {
            assert_eq!(sim.calls("ReIssueCertificateCSRInfo"), reissues + 1, "one reissue for one renewal");
        }
    }
    assert_eq!(sim.purchases(), 1);
}

/// Runs a command of the README through `sh`, with the real kubectl against the testbed.
fn readme_command(env: &Env, command: &str) -> String {
    let home = env.api.kubeconfig_dir().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("sh")
        .args(["-c", command])
        .env("KUBECONFIG", env.api.kubeconfig_path())
        .env("HOME", &home)
        .output()
        .expect("run sh");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{command}\nfailed: {stderr}\n{stdout}");
    stdout.into_owned()
}

/// The README's commands for a person: setting the vendor order id of an unconfirmed purchase
/// (`kubectl patch … --subresource=status`), listing the records to create (jsonpath), and waiting
/// for the certificate — run as written, with the real kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_commands_a_person_runs_work_as_written() {
    let (env, sim) = ucloud_env().await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = |start: &str| -> String {
        let from = readme.find(start).unwrap_or_else(|| panic!("README has no command starting {start:?}"));
        let end = readme[from..].find("\n```").unwrap();
        readme[from..from + end].to_string()
    };
    let named = |command: String| command.replace("shop-example-com", "web").replace("-n default", &format!("-n {NS}"));

    // The purchase is made, its answer lost, and the vendor lists it only after an hour: a person
    // reads the id in the console and sets it with the README's command.
    sim.set_list_lag(Duration::from_secs(3600));
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::LoseAnswer);
    env.apply(ucloud_dv_order("web", &["web.example.com"], "ucloud")).await;
    env.wait_for("web", "PurchaseUnconfirmed", unconfirmed).await;
    let id = sim.orders()[0].id.to_string();
    let paragraph = readme.find("`kubectl patch certificateorder NAME").expect("the README says how to set the id");
    let patch = readme[paragraph + 1..].split('`').next().unwrap().replace('\n', " ");
    let patch =
        patch.replace("NAME", "web").replace("-n NS", &format!("-n {NS}")).replace("\"ID\"", &format!("\"{id}\""));
    readme_command(&env, &patch);
    let validating = env.wait_phase("web", Phase::DomainValidation).await;
    assert_eq!(vendor_id(&validating), Some(id));
    assert_eq!(sim.purchases(), 1);

    // The records to create, as the quickstart lists them.
    let listed = readme_command(&env, &named(block("kubectl get certificateorder shop-example-com -n default \\")));
    let wanted: String = validating
        .status
        .as_ref()
        .unwrap()
        .challenges
        .iter()
        .map(|c| format!("{} TXT \"{}\"\n", c.target, c.expected_value))
        .collect();
    assert_eq!(listed, wanted);
    env.publish_challenges(&validating).await;
    let waited = block("kubectl wait --for=condition=Ready certificateorder/shop-example-com");
    let waited = named(waited.lines().next().unwrap().to_string());
    assert!(readme_command(&env, &waited).contains("condition met"));
    assert_ussl_secret(&env, &sim, "web-tls", &["web.example.com"]).await;
}

/// A purchase covers `validityYears`; a certificate that would outlive that term is preceded by a
/// term renewal (`RenewCertificateOrder`), made exactly once although its answer is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_renewal_past_the_bought_term_renews_the_term_once_first() {
    let (env, sim) = ucloud_env().await;
    env.apply(ucloud_dv_order("term", &["term.example.com"], "ucloud")).await;
    let validating = env.wait_phase("term", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("term", Phase::Issued).await.status.unwrap();
    let bought = issued.order.clone().unwrap();
    let bought_until = bought.term_end_time.expect("the term bought with the purchase is shown");
    let purchased = bought.purchase_requested_time.unwrap();
    assert!(
        (bought_until - purchased - chrono::Duration::days(365)).num_days().abs() <= 1,
        "one year bought: {purchased} .. {bought_until}"
    );

    // Years later (as far as the order knows): the term ends tomorrow.
    let ends = chrono::Utc::now() + chrono::Duration::days(1);
    let patch = json!({"status": {"order": {"termEndTime": ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}}});
    env.orders().patch_status("term", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    sim.fail_next_of("RenewCertificateOrder", 1, testbed::ussl::Fault::LoseAnswer);
    let out = env.cli(&["renew", "term", "-n", NS]);
    assert!(out.status.success(), "renew: {}", String::from_utf8_lossy(&out.stderr));

    let renewing = env
        .wait_for("term", "challenges of the renewal", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.order.as_ref().is_some_and(|v| v.term_renewals == 1) && !s.challenges.is_empty())
        })
        .await;
    env.publish_challenges(&renewing).await;
    let first = issued.certificate.unwrap();
    let renewed = env
        .wait_for("term", "the renewed certificate", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Issued && s.certificate.as_ref().is_some_and(|c| c.serial != first.serial)
            })
        })
        .await;
    let vendor = renewed.status.unwrap().order.unwrap();
    let until = vendor.term_end_time.unwrap();
    assert!(
        (until - ends - chrono::Duration::days(365)).num_minutes().abs() <= 1,
        "the term runs on from its end: {until}"
    );
    assert_eq!(vendor.term_renewal_requested_time, None);
    assert_eq!((vendor.term_renewals, vendor.issuances), (1, 2));
    assert_eq!(sim.term_renewals(), 1, "the term was renewed once, although the first answer was lost");
    assert_eq!(sim.calls("RenewCertificateOrder"), 1, "after the lost answer the renewal was found, not made again");
    assert_eq!(sim.purchases(), 1);
    assert_ussl_secret(&env, &sim, "term-tls", &["term.example.com"]).await;
}

/// A person (or a bad script) garbles `tls.crt` next to the good `tls.key`: the certificate issued
/// for that key is downloaded again — no new key, no reissue, no new issuance — and an event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_tls_crt_next_to_a_good_key_is_downloaded_again_not_reissued() {
    let (env, sim) = ucloud_env().await;
    env.provider("auto", "Automatic").await;
    for order in [
        dv_order("garbled-local", &["garbled.example.com"], "auto"),
        ucloud_dv_order("garbled-ucloud", &["garbled.example.org"], "ucloud"),
    ] {
        let name = order["metadata"]["name"].as_str().unwrap().to_string();
        let secret_name = order["spec"]["secretName"].as_str().unwrap().to_string();
        let domain = order["spec"]["domains"][0].as_str().unwrap().to_string();
        env.apply(order).await;
        let validating = env.wait_phase(&name, Phase::DomainValidation).await;
        env.publish_challenges(&validating).await;
        let issued = env.wait_phase(&name, Phase::Issued).await.status.unwrap();
        let first = issued.certificate.clone().unwrap();
        let (reissues, purchases) = (sim.calls("ReIssueCertificateCSRInfo"), sim.purchases());
        let key_before = env.secrets().get(&secret_name).await.unwrap().data.unwrap()["tls.key"].clone();

        let garbage = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n",
        );
        env.secrets()
            .patch(&secret_name, &PatchParams::default(), &Patch::Merge(json!({"data": {"tls.crt": garbage}})))
            .await
            .expect("garble tls.crt");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let repaired = loop {
            let secret = env.secrets().get(&secret_name).await.unwrap();
            let data = secret.data.clone().unwrap();
            let crt = String::from_utf8_lossy(&data["tls.crt"].0).to_string();
            let key = PrivateKey::from_pem(&String::from_utf8_lossy(&data["tls.key"].0)).unwrap();
            if pki::verify_issued(&crt, &key, std::slice::from_ref(&domain), chrono::Utc::now(), None).is_ok() {
                break data;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}: the Secret was not repaired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(repaired["tls.key"], key_before, "{name}: the same key");
        let after = env.wait_phase(&name, Phase::Issued).await.status.unwrap();
        let vendor = after.order.unwrap();
        assert_eq!(vendor.issuances, 1, "{name}: a repair is not an issuance");
        assert_eq!(vendor.info_digest, issued.order.unwrap().info_digest, "{name}: nothing submitted again");
        assert_eq!(after.certificate.unwrap().key_fingerprint, first.key_fingerprint);
        assert!(after.private_key_secret.is_none(), "{name}: no pending key was made");
        assert_eq!((sim.calls("ReIssueCertificateCSRInfo"), sim.purchases()), (reissues, purchases), "{name}");
        let notes = env.events(&name, "SecretRepaired").await;
        assert_eq!(notes.len(), 1, "{name}: one event says what happened: {notes:?}");
        assert!(notes[0].contains(&secret_name) && notes[0].contains("no new key"), "{}", notes[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_rotates_the_key_and_swaps_the_secret_once_without_a_gap() {
    use futures::StreamExt;
    use kube::runtime::watcher;
    use std::sync::{Arc, Mutex};

    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("site", &["renew.example.com"], "auto")).await;
    let validating = env.wait_phase("site", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("site", Phase::Issued).await;
    let first = issued.status.as_ref().unwrap().certificate.clone().unwrap();
    let key_of = |s: &Secret| s.data.as_ref().unwrap()["tls.key"].0.clone();
    let old_key = key_of(&env.secrets().get("site-tls").await.unwrap());

    // Watch the Secret and the order's Ready condition through the renewal.
    let secret_events = Arc::new(Mutex::new(Vec::<String>::new()));
    let not_ready = Arc::new(Mutex::new(Vec::<String>::new()));
    let secret_watch = {
        let (secrets, seen) = (env.secrets(), secret_events.clone());
        tokio::spawn(async move {
            let mut stream = watcher(secrets, watcher::Config::default().fields("metadata.name=site-tls")).boxed();
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    watcher::Event::Apply(s) => {
                        seen.lock().unwrap().push(format!("modified {}", s.annotations()["certorder.io/serial"]))
                    }
                    watcher::Event::Delete(_) => seen.lock().unwrap().push("deleted".to_string()),
                    _ => {}
                }
            }
        })
    };
    let order_watch = {
        let (orders, bad) = (env.orders(), not_ready.clone());
        tokio::spawn(async move {
            let mut stream = watcher(orders, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = event
                    && !has_condition(&o, "Ready", "True")
                {
                    bad.lock().unwrap().push(format!("{:?}", condition(&o, "Ready")));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let out = env.cli(&["renew", "site", "-n", NS]);
    assert!(out.status.success(), "renew: {}", String::from_utf8_lossy(&out.stderr));
    // The CA hands out new challenges for the new key.
    let old_values: Vec<String> =
        validating.status.as_ref().unwrap().challenges.iter().map(|c| c.expected_value.clone()).collect();
    let renewing = env
        .wait_for("site", "new challenges", |o| {
            o.status.as_ref().is_some_and(|s| {
                !s.challenges.is_empty() && s.challenges.iter().all(|c| !old_values.contains(&c.expected_value))
            })
        })
        .await;
    assert!(has_condition(&renewing, "Ready", "True"), "the old certificate is still good while renewing");
    env.publish_challenges(&renewing).await;
    let renewed = env
        .wait_for("site", "a new certificate", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Issued && s.certificate.as_ref().is_some_and(|c| c.serial != first.serial)
            })
        })
        .await;
    let second = renewed.status.as_ref().unwrap().certificate.clone().unwrap();
    assert_ne!(second.key_fingerprint, first.key_fingerprint, "rotationPolicy Always: a new key");
    let secret = assert_verified_secret(&env, "site-tls", &["renew.example.com"], "auto").await;
    assert_ne!(key_of(&secret), old_key);
    assert_eq!(renewed.status.as_ref().unwrap().order.as_ref().unwrap().issuances, 2);

    // Answered once: nothing more happens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = env.orders().get("site").await.unwrap();
    assert_eq!(later.status.as_ref().unwrap().certificate.as_ref().unwrap().serial, second.serial);
    secret_watch.abort();
    order_watch.abort();
    assert_eq!(
        *secret_events.lock().unwrap(),
        [format!("modified {}", second.serial)],
        "the Secret is replaced in one write, never deleted"
    );
    assert!(
        not_ready.lock().unwrap().is_empty(),
        "Ready went away during the renewal: {:?}",
        not_ready.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_check_explain_an_order_stuck_in_domain_validation() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("stuck", &["stuck.example.com"], "auto")).await;
    let order = env
        .wait_for("stuck", "a failing self-check", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.challenges.iter().any(|c| c.self_check.as_ref().is_some_and(|c| !c.passed)))
        })
        .await;
    let challenge = &order.status.as_ref().unwrap().challenges[0];
    // The failure is news (the phase's event, with what to create) once a second check fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.events("stuck", "DomainValidation").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no DomainValidation event after failing self-checks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A wrong value is published: the check must say what it found and what it wanted.
    env.dns.set_txt("_dnsauth.stuck.example.com", &["a-stale-token"]).await.unwrap();

    let out = env.cli(&["status", "stuck", "-n", NS]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "CertificateOrder shop/stuck",
        "Phase:    DomainValidation",
        &format!("TXT _dnsauth.stuck.example.com = \"{}\"", challenge.expected_value),
        "self-check FAILING",
        "DomainsVerified",
        "Normal  DomainValidation",
    ] {
        assert!(report.contains(needle), "status lacks {needle:?}:\n{report}");
    }

    let dns = env.dns.addr().to_string();
    let out = env.cli(&["check", "stuck", "-n", NS, "--dns-servers", &dns]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a failing check exits 1:\n{report}");
    assert!(report.contains("FAIL stuck.example.com"), "{report}");
    assert!(report.contains("a-stale-token"), "check shows what it found:\n{report}");

    env.publish_challenges(&order).await;
    let out = env.cli(&["check", "stuck", "-n", NS, "--dns-servers", &dns]);
    assert!(out.status.success(), "check passes once the record is right: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_is_ready_with_no_orders_at_all() {
    let api = ApiServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(api.client());
    for crd in [CertificateOrder::crd(), ClusterCertificateProvider::crd()] {
        crds.create(&PostParams::default(), &crd).await.expect("create CRD");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut operator = Command::new(env!("CARGO_BIN_EXE_certorder"))
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}"), "--log-level", "warn"])
        .env("KUBECONFIG", api.kubeconfig_path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the operator");
    let get = |path: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        answer.split_whitespace().nth(1).map(str::to_string)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ready = None;
    while tokio::time::Instant::now() < deadline {
        ready = get("/readyz").await;
        if ready.as_deref() == Some("200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/healthz").await.as_deref(), Some("200"));
    let metrics = get("/metrics").await;
    let _ = operator.kill();
    let _ = operator.wait();
    assert_eq!(ready.as_deref(), Some("200"), "/readyz must turn ready once the caches are synced, orders or not");
    assert_eq!(metrics.as_deref(), Some("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_and_parse() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("site", &["metrics.example.com"], "auto")).await;
    let validating = env.wait_phase("site", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    let issued = env.wait_phase("site", Phase::Issued).await;
    let not_after = issued.status.as_ref().unwrap().certificate.as_ref().unwrap().not_after.timestamp();

    // The reconcile that wrote `Issued` records its duration once it returns, which may be after
    // the watch shows the status: scrape until both reconciles the flow needs at least (to
    // DomainValidation, then to Issued) are counted, for at most ten seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (body, types, samples) = loop {
        let (code, body) = http_get(env.metrics_port, "/metrics").await.expect("scrape /metrics");
        assert_eq!(code, "200");
        // OpenMetrics text: "# TYPE name kind" lines, then "name{labels} value" samples, "# EOF".
        assert!(body.trim_end().ends_with("# EOF"), "{body}");
        let mut types = std::collections::BTreeMap::new();
        let mut samples = std::collections::BTreeMap::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("sample line");
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
                samples.insert(series.to_string(), value);
            }
        }
        let counted = samples.get("certorder_reconcile_duration_seconds_count").copied().unwrap_or_default();
        if counted >= 2.0 || std::time::Instant::now() > deadline {
            break (body, types, samples);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sample = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("no sample {series} in:\n{body}"));
    assert_eq!(types.get("certorder_orders").map(String::as_str), Some("gauge"));
    assert_eq!(types.get("certorder_reconcile_duration_seconds").map(String::as_str), Some("histogram"));
    assert_eq!(sample(r#"certorder_orders{phase="Issued"}"#), 1.0);
    assert_eq!(sample(r#"certorder_orders{phase="Pending"}"#), 0.0);
    assert_eq!(
        sample(r#"certorder_certificate_expiration_timestamp_seconds{namespace="shop",name="site"}"#),
        not_after as f64
    );
    assert!(
        sample(r#"certorder_certificate_renewal_timestamp_seconds{namespace="shop",name="site"}"#) < not_after as f64
    );
    assert_eq!(sample(r#"certorder_provider_calls_total{provider="local",action="download",result="ok"}"#), 1.0);
    assert_eq!(sample(r#"certorder_provider_calls_total{provider="local",action="purchase",result="ok"}"#), 1.0);
    assert!(sample(r#"certorder_self_checks_total{result="passed"}"#) >= 1.0);
    assert!(sample("certorder_reconcile_duration_seconds_count") >= 2.0);
    assert_eq!(http_get(env.metrics_port, "/readyz").await.map(|(c, _)| c).as_deref(), Some("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_an_unknown_state_code_is_shown_verbatim_and_not_guessed() {
    let (env, sim) = ucloud_env().await;
    env.apply(ucloud_dv_order("odd", &["odd.example.com"], "ucloud")).await;
    let validating = env.wait_phase("odd", Phase::DomainValidation).await;
    let id = sim.orders()[0].id;
    sim.set_state(id, "AWAITING_MANUAL_AUDIT_7").unwrap();
    let odd = env
        .wait_for("odd", "the unknown state", |o| {
            o.status.as_ref().and_then(|s| s.order.as_ref()).and_then(|v| v.state.as_deref())
                == Some("AWAITING_MANUAL_AUDIT_7")
        })
        .await;
    let status = odd.status.as_ref().unwrap();
    assert_eq!(status.order.as_ref().unwrap().stage, Some(certorder::api::VendorStage::Unknown));
    assert_eq!(status.phase, Phase::DomainValidation, "the phase stays where it was");
    assert!(
        status.message.as_deref().unwrap().contains("\"AWAITING_MANUAL_AUDIT_7\", which certorder does not know"),
        "{:?}",
        status.message
    );
    assert_eq!(condition(&odd, "Ready").unwrap().reason, "UnknownVendorState");
    // The vendor moves on: so does the order.
    sim.set_state(id, "DOMAIN_AUTH").unwrap();
    env.publish_challenges(&validating).await;
    env.wait_phase("odd", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "odd-tls", &["odd.example.com"]).await;
}

/// A sample's value in an OpenMetrics scrape, e.g. `certorder_status_writes_total`.
fn scraped(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    use k8s_openapi::api::coordination::v1::Lease;

    let env = Env::start_with_controller(false).await;
    let dns = env.dns.addr().to_string();
    let replica = |identity: &str, port: u16| {
        Command::new(env!("CARGO_BIN_EXE_certorder"))
            .args(["run", "--leader-elect", "--leader-election-identity", identity, "--lease-duration", "3s"])
            .args(["--lease-renew-grace", "1s", "--metrics-addr", &format!("127.0.0.1:{port}"), "--dns-servers", &dns])
            .args(["--self-check-initial", "200ms", "--self-check-max", "1s", "--log-level", "warn"])
            .env("KUBECONFIG", env.api.kubeconfig_path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start a replica")
    };
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "certorder-system");
    let holder = || async { leases.get_opt("certorder").await.ok().flatten().and_then(|l| l.spec?.holder_identity) };
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = replica("replica-a", port_a);
    wait_until(|| async { holder().await.as_deref() == Some("replica-a") }).await;
    let mut b = replica("replica-b", port_b);
    wait_until(|| async { http_get(port_b, "/readyz").await.is_some_and(|(c, _)| c == "200") }).await;

    env.provider("auto", "Automatic").await;
    env.apply(dv_order("ha", &["ha.example.com"], "auto")).await;
    let validating = env.wait_phase("ha", Phase::DomainValidation).await;
    let (_, standby) = http_get(port_b, "/metrics").await.expect("scrape the standby");
    assert_eq!(scraped(&standby, "certorder_status_writes_total"), Some(0.0), "the standby must not write");
    assert_eq!(holder().await.as_deref(), Some("replica-a"));

    // The leader dies without a word (no Lease release): the standby waits out the Lease.
    a.kill().unwrap();
    a.wait().unwrap();
    let died = std::time::Instant::now();
    wait_until(|| async { holder().await.as_deref() == Some("replica-b") }).await;
    println!("hand-over took {:.1} s after the leader died (Lease duration 3 s)", died.elapsed().as_secs_f64());
    env.publish_challenges(&validating).await;
    env.wait_phase("ha", Phase::Issued).await;
    assert_verified_secret(&env, "ha-tls", &["ha.example.com"], "auto").await;
    let (_, leader) = http_get(port_b, "/metrics").await.expect("scrape the new leader");
    assert!(
        scraped(&leader, "certorder_status_writes_total").unwrap_or(0.0) >= 1.0,
        "the new leader finished the order"
    );
    b.kill().unwrap();
    b.wait().unwrap();
}

/// The leader is cut off from the API server (not from the vendor) while its purchase is being
/// answered. It must stop acting — and here, exit — before its Lease can pass to the standby, which
/// then finds the purchase and buys nothing: exactly one purchase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_a_leader_cut_off_from_the_api_stops_before_the_standby_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;

    let env = Env::start_with_controller(false).await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    let dns = env.dns.addr().to_string();
    let replica = |identity: &str| {
        let (kubeconfig, token) = env.api.client_kubeconfig(identity);
        let child = Command::new(env!("CARGO_BIN_EXE_certorder"))
            .args(["run", "--leader-elect", "--leader-election-identity", identity, "--lease-duration", "4s"])
            .args(["--lease-renew-grace", "2s", "--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--dns-servers", &dns, "--self-check-initial", "200ms", "--self-check-max", "1s"])
            .args(["--log-level", "warn"])
            .env("KUBECONFIG", kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a replica");
        (child, token)
    };
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "certorder-system");
    let holder = || async { leases.get_opt("certorder").await.ok().flatten().and_then(|l| l.spec?.holder_identity) };
    let (mut a, a_token) = replica("replica-a");
    wait_until(|| async { holder().await.as_deref() == Some("replica-a") }).await;
    let (mut b, _) = replica("replica-b");

    // The purchase is made at once and answered 3 s later; the leader is cut off meanwhile.
    sim.fail_next_of("PurchaseCertificate", 1, testbed::ussl::Fault::SlowAnswer(Duration::from_secs(3)));
    env.apply(ucloud_dv_order("fenced", &["fenced.example.com"], "ucloud")).await;
    wait_until(|| async { sim.purchases() == 1 }).await;
    env.api.faults().cut_off(&a_token);
    let cut = std::time::Instant::now();

    // The leader notices by itself (its renewals go unanswered) and exits before the standby holds
    // the Lease: nothing it does can then race the new leader.
    let (exited, took_over) = loop {
        let exited = a.try_wait().unwrap().map(|status| (status, cut.elapsed()));
        let holding = holder().await;
        if let Some((status, after)) = exited {
            assert!(!status.success(), "the cut-off leader exits with an error");
            assert_ne!(holding.as_deref(), Some("replica-b"), "the standby took over before the leader stopped");
            wait_until(|| async { holder().await.as_deref() == Some("replica-b") }).await;
            break (after, cut.elapsed());
        }
        assert_ne!(holding.as_deref(), Some("replica-b"), "the standby took over while the cut-off leader still ran");
        assert!(cut.elapsed() < Duration::from_secs(30), "the cut-off leader never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(a.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("could not renew the leader Lease in time"), "{stderr}");
    println!(
        "cut-off leader exited {:.1} s after the cut, the standby held the Lease {:.1} s after it (Lease 4 s)",
        exited.as_secs_f64(),
        took_over.as_secs_f64()
    );

    let validating = env.wait_phase("fenced", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    env.wait_phase("fenced", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "fenced-tls", &["fenced.example.com"]).await;
    assert_eq!(sim.purchases(), 1, "exactly one purchase across the hand-over");
    env.api.faults().reconnect(&a_token);
    b.kill().unwrap();
    b.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_deleting_an_unissued_order_with_cancel_on_delete_cancels_the_vendor_order() {
    let (env, sim) = ucloud_env().await;
    let mut order = ucloud_dv_order("gone", &["gone.example.com"], "ucloud");
    order["spec"]["cancelOnDelete"] = json!(true);
    env.apply(order).await;
    env.wait_phase("gone", Phase::DomainValidation).await;
    env.orders().delete("gone", &DeleteParams::default()).await.expect("delete order");
    wait_until(|| async { env.orders().get_opt("gone").await.unwrap().is_none() }).await;
    assert_eq!(sim.orders()[0].state, "CANCELLED");
    assert_eq!(sim.calls("CancelCertificateOrder"), 1);
}

/// What a run of many orders cost: operator writes (the test's own order creates left out).
struct RunCounts {
    writes: u64,
    bad_secret_versions: Vec<String>,
    secret_writes: std::collections::BTreeMap<String, usize>,
}

/// Rounds of 250 ms with API faults and operator crashes in a chaos run.
const STORM_ROUNDS: u32 = 40;

/// Creates `n` DV orders, publishes the TXT records they ask for as they appear, and waits until
/// all are Issued. With `chaos`, the API server misbehaves all along (500s, 429s with
/// Retry-After, dropped watches, 410 Gone, latency) and the operator is killed and restarted
/// every couple of seconds. Every version of every TLS Secret is checked as it is written.
async fn run_orders(env: &mut Env, n: usize, chaos: bool) -> RunCounts {
    env.provider("auto", "Automatic").await;
    run_orders_with(env, n, chaos, &|name, domain| dv_order(name, &[domain], "auto"), &|_| {}).await
}

/// [`run_orders`] with the orders `order(name, domain)` builds, and `vendor_chaos` run in each
/// round of the storm (for a vendor's own faults).
async fn run_orders_with(
    env: &mut Env,
    n: usize,
    chaos: bool,
    order: &dyn Fn(&str, &str) -> Value,
    vendor_chaos: &dyn Fn(&mut rand::rngs::StdRng),
) -> RunCounts {
    use futures::StreamExt;
    use kube::runtime::watcher;
    use rand::{Rng, SeedableRng};
    use std::sync::{Arc, Mutex};
    use testbed::{FaultAnswer, FaultMatch};

    let publisher = {
        let (orders, dns) = (env.orders(), env.dns.clone());
        tokio::spawn(async move {
            let mut records: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
            let mut stream = watcher(orders, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event else { continue };
                for c in o.status.map(|s| s.challenges).unwrap_or_default() {
                    let values = records.entry(c.target.clone()).or_default();
                    if values.insert(c.expected_value) {
                        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                        let _ = dns.set_txt(&c.target, &refs).await;
                    }
                }
            }
        })
    };
    let bad = Arc::new(Mutex::new(Vec::new()));
    let secret_writes = Arc::new(Mutex::new(BTreeMap::<String, std::collections::BTreeSet<String>>::new()));
    let checker = {
        let (secrets, bad, writes) = (env.secrets(), bad.clone(), secret_writes.clone());
        tokio::spawn(async move {
            let mut stream =
                watcher(secrets, watcher::Config::default().labels("app.kubernetes.io/managed-by=certorder")).boxed();
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = event else { continue };
                if s.type_.as_deref() != Some("kubernetes.io/tls") {
                    continue;
                }
                let data = s.data.clone().unwrap_or_default();
                let text =
                    |k: &str| data.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default();
                let verified = PrivateKey::from_pem(&text("tls.key")).map_err(|e| e.to_string()).and_then(|key| {
                    pki::verify_issued(&text("tls.crt"), &key, &[], chrono::Utc::now(), None).map_err(|e| e.to_string())
                });
                if let Err(e) = verified {
                    bad.lock().unwrap().push(format!("{} {:?}: {e}", s.name_any(), s.resource_version()));
                }
                writes
                    .lock()
                    .unwrap()
                    .entry(s.name_any())
                    .or_default()
                    .insert(s.resource_version().unwrap_or_default());
            }
        })
    };

    env.api.faults().reset_counts();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261124);
    // Only a guard against a hang: a loaded machine may take several times as long as an idle one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut round = 0u32;
    let mut created = 0;
    let mut partitioned = false;
    // A crash every two seconds (8 rounds); with replicas, a killed leader blocks its Lease for
    // 4 s, so a leader is killed every six.
    let restart_every = if env.replicas.is_empty() { 8 } else { 24 };
    loop {
        // Orders arrive in batches while the storm is on.
        for i in created..(created + 50).min(n) {
            let name = format!("o{i}");
            env.apply(order(&name, &format!("{name}.example.org"))).await;
        }
        created = (created + 50).min(n);
        let orders = env.orders().list(&Default::default()).await;
        if let Ok(list) = &orders {
            let issued =
                list.items.iter().filter(|o| o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued)).count();
            if issued == n {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let stuck: Vec<String> = list
                    .items
                    .iter()
                    .filter(|o| !o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued))
                    .map(|o| format!("{}: {}", o.name_any(), serde_json::to_string(&o.status).unwrap()))
                    .take(3)
                    .collect();
                panic!("only {issued} of {n} orders issued; for example:\n{}", stuck.join("\n"));
            }
        }
        round += 1;
        // A storm of ten seconds while orders arrive (faults come per round, not per request,
        // so a storm without end would starve the last few orders), then recovery.
        if chaos && round == STORM_ROUNDS + 1 {
            env.api.faults().clear();
        }
        if chaos && round <= STORM_ROUNDS {
            let faults = env.api.faults();
            faults.set_latency(Duration::from_millis(rng.random_range(5..20)));
            faults.inject(
                FaultMatch::default().verb("patch").resource("certificateorders/status"),
                FaultAnswer::InternalError,
                5,
            );
            faults.inject(
                FaultMatch::default().verb("create").resource("secrets"),
                FaultAnswer::TooManyRequests { retry_after_secs: 1 },
                5,
            );
            faults.inject(FaultMatch::default().verb("patch").resource("secrets"), FaultAnswer::InternalError, 5);
            match rng.random_range(0..3) {
                0 => env.api.drop_watches(),
                1 => env.api.compact(),
                _ => {}
            }
            vendor_chaos(&mut rng);
            if round.is_multiple_of(restart_every) {
                env.restart_controller().await;
            }
            // Once, from the middle of the storm on: cut off whichever replica leads then.
            if round >= STORM_ROUNDS / 2 && !env.replicas.is_empty() && !partitioned {
                partitioned = env.partition_leader().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(env.replicas.is_empty() || partitioned, "a leader was cut off during the storm");
    println!(
        "{n} orders issued after {round} rounds{}",
        if chaos {
            format!(" and {} operator restarts", round.min(STORM_ROUNDS) / restart_every)
        } else {
            String::new()
        }
    );
    env.api.faults().clear();
    let counts = env.api.faults().counts();
    publisher.abort();
    checker.abort();
    // Writes of the operator for the orders: the test's own creates and the replicas' Lease
    // renewals are left out.
    let writes: u64 = counts
        .iter()
        .filter(|((verb, resource), _)| {
            matches!(verb.as_str(), "create" | "update" | "patch" | "delete") && resource != "leases"
        })
        .map(|(_, n)| n)
        .sum::<u64>()
        - n as u64;
    for order in env.orders().list(&Default::default()).await.unwrap() {
        let status = order.status.unwrap();
        let vendor = status.order.unwrap();
        assert_eq!(vendor.issuances, 1, "{}: one certificate per order", order.metadata.name.unwrap());
        assert!(vendor.id.is_some(), "every order has its vendor order");
    }
    let bad_secret_versions = bad.lock().unwrap().clone();
    let secret_writes = secret_writes.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.len())).collect();
    RunCounts { writes, bad_secret_versions, secret_writes }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_api_faults_and_operator_crashes() {
    const ORDERS: usize = 200;
    let mut calm = Env::start().await;
    let baseline = run_orders(&mut calm, ORDERS, false).await;
    drop(calm);
    let mut stormy = Env::start().await;
    let chaos = run_orders(&mut stormy, ORDERS, true).await;
    println!(
        "{ORDERS} orders: {:.2} operator writes per order without faults, {:.2} through 10 s of API faults (500s, 429s, dropped watches, 410 Gone, latency) and a crash every 2 s",
        baseline.writes as f64 / ORDERS as f64,
        chaos.writes as f64 / ORDERS as f64
    );
    for run in [&baseline, &chaos] {
        assert!(
            run.bad_secret_versions.is_empty(),
            "a TLS Secret held a certificate that does not verify: {:?}",
            run.bad_secret_versions
        );
        assert_eq!(run.secret_writes.len(), ORDERS, "every order has its TLS Secret");
    }
    let rewritten: Vec<_> = chaos.secret_writes.iter().filter(|(_, n)| **n > 1).collect();
    println!("TLS Secrets written more than once under chaos: {}", rewritten.len());
    assert!(
        chaos.writes <= 2 * baseline.writes,
        "no hot loop: {} writes under faults vs {} without",
        chaos.writes,
        baseline.writes
    );
}

/// The acceptance storm of the purchase promise: 200 UCloud orders through lost answers (the
/// purchase is made, the answer never comes), slow answers, 153s and 150s, a vendor that lists new
/// orders only 30 s after they were bought, API faults, a leader killed every six seconds (two
/// replicas with leader election, a Lease of 4 s) and one leader cut off from the API server. Every order is
/// bought exactly once. The provider may buy again after 45 s with nothing found (longer than the
/// listing lag): a killed leader can leave a purchase call that never reached the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucloud_orders_survive_faults_and_crashes_with_exactly_one_purchase_each() {
    use rand::Rng;
    const ORDERS: usize = 200;
    let (mut env, sim) = ucloud_env().await;
    env.start_replicas();
    allow_buying_again(&env, "ucloud", "45s").await;
    sim.set_list_lag(Duration::from_secs(30));
    let sim = std::sync::Arc::new(sim);
    let sim_faults = sim.clone();
    let started = std::time::Instant::now();
    let chaos = run_orders_with(
        &mut env,
        ORDERS,
        true,
        &|name, domain| ucloud_dv_order(name, &[domain], "ucloud"),
        &move |rng| {
            let fault = match rng.random_range(0..4) {
                0 => testbed::ussl::Fault::RetCode(153),
                1 => testbed::ussl::Fault::LoseAnswer,
                2 => testbed::ussl::Fault::SlowAnswer(Duration::from_secs(2)),
                _ => testbed::ussl::Fault::RetCode(150),
            };
            sim_faults.fail_next(2, fault);
        },
    )
    .await;
    let per_order = |n: usize| n as f64 / ORDERS as f64;
    // Every order holds a vendor order of its own, and no vendor order is left over.
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for order in env.orders().list(&Default::default()).await.unwrap() {
        holders.entry(vendor_id(&order).unwrap_or_default()).or_default().push(order.name_any());
    }
    let shared: Vec<_> = holders.iter().filter(|(_, names)| names.len() > 1).collect();
    println!(
        "{ORDERS} UCloud orders through the storm in {:.0} s: purchases per order {:.2} ({} vendor orders held by one order each), vendor calls per order {:.1} ({} lookups), operator API writes per order {:.2}",
        started.elapsed().as_secs_f64(),
        per_order(sim.purchases()),
        holders.len() - shared.len(),
        per_order(sim.total_calls()),
        sim.calls("GetCertificateList"),
        chaos.writes as f64 / ORDERS as f64,
    );
    println!(
        "purchases made again after 45 s with nothing listed (a call that never reached the vendor): {}",
        captured_logs().matches("buying again: the unconfirmed purchase was not found").count()
    );
    assert!(shared.is_empty(), "vendor orders held by two orders: {shared:?}");
    assert_eq!(holders.len(), ORDERS, "one vendor order per order");
    assert_eq!(sim.purchases(), ORDERS, "exactly one purchase per order, crashes or not");
    assert!(chaos.bad_secret_versions.is_empty(), "{:?}", chaos.bad_secret_versions);
    assert_eq!(chaos.secret_writes.len(), ORDERS);
}

// ---------------------------------------------------------------------------------------------
// A shared cluster: whoever can create an order cannot take Secrets, run images, approve itself,
// spend on a provider not granted to its namespace or route another namespace's host.

/// Waits until the order is Stalled with reason NotPermitted, and returns that message.
async fn not_permitted(env: &Env, name: &str) -> String {
    let order = env
        .wait_for(name, "Stalled: NotPermitted", |o| {
            condition(o, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "NotPermitted")
        })
        .await;
    let message = condition(&order, "Stalled").unwrap().message.clone();
    assert_eq!(order.status.as_ref().unwrap().message.as_deref(), Some(message.as_str()));
    assert!(has_condition(&order, "Ready", "False"));
    // The same words reach `kubectl describe` as a Warning event.
    wait_until(|| async { env.events(name, "NotPermitted").await.contains(&message) }).await;
    message
}

fn tls_secret(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "helm-chart"}, "annotations": annotations},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Zm9yZWlnbg==", "tls.key": "Zm9yZWlnbg=="},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_a_secret_that_is_not_the_orders_own_is_never_taken_until_its_owner_opts_in() {
    let (env, sim) = ucloud_env().await;
    // Another tool's TLS Secret (a Helm chart's, cert-manager's) with the name the order asks for.
    env.apply(tls_secret("site-tls", json!({}))).await;
    let before = env.secrets().get("site-tls").await.unwrap();
    env.apply(ucloud_dv_order("site", &["site.example.com"], "ucloud")).await;

    let message = not_permitted(&env, "site").await;
    assert!(
        message.contains("Secret \"site-tls\" (spec.secretName) exists and was not created by certorder"),
        "{message}"
    );
    assert!(message.contains("certorder.io/adopt-for=site"), "says how to opt in: {message}");
    assert_eq!(sim.purchases(), 0, "nothing is bought for an order that could not install it");
    assert_eq!(env.secrets().get("site-tls").await.unwrap().resource_version(), before.resource_version());
    let pending = certorder::controller::pending_key_secret_name("site");
    assert!(env.secrets().get_opt(&pending).await.unwrap().is_none(), "no key is made either");

    // The Secret's owner lets the order adopt it: bought, validated, installed into that Secret.
    env.apply(tls_secret("site-tls", json!({"certorder.io/adopt-for": "site"}))).await;
    let validating = env.wait_phase("site", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    env.wait_phase("site", Phase::Issued).await;
    assert_ussl_secret(&env, &sim, "site-tls", &["site.example.com"]).await;
    let adopted = env.secrets().get("site-tls").await.unwrap();
    assert_eq!(adopted.labels().get("certorder.io/order").map(String::as_str), Some("site"));
    assert_eq!(sim.purchases(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_of_two_orders_naming_one_secret_the_holder_keeps_it_and_a_foreign_key_secret_is_left_alone() {
    let env = Env::start().await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("first", &["first.example.com"], "auto")).await;
    let validating = env.wait_phase("first", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    env.wait_phase("first", Phase::Issued).await;
    let held = env.secrets().get("first-tls").await.unwrap();

    // A second order names the same Secret: refused, naming the holder; the Secret is untouched.
    let mut second = dv_order("second", &["second.example.com"], "auto");
    second["spec"]["secretName"] = json!("first-tls");
    env.apply(second).await;
    let message = not_permitted(&env, "second").await;
    assert!(
        message.contains("Secret \"first-tls\" (spec.secretName) is held by CertificateOrder \"first\""),
        "{message}"
    );
    assert_eq!(env.secrets().get("first-tls").await.unwrap().resource_version(), held.resource_version());
    assert_eq!(env.orders().get("second").await.unwrap().status.unwrap().phase, Phase::Pending);

    // A Secret that happens to have the pending key's name is neither replaced nor deleted.
    let key_name = certorder::controller::pending_key_secret_name("third");
    let foreign: Value = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": key_name, "namespace": NS},
        "type": "Opaque", "data": {"password": "aHVudGVyMg=="},
    });
    env.apply(foreign).await;
    let before = env.secrets().get(&key_name).await.unwrap();
    env.apply(dv_order("third", &["third.example.com"], "auto")).await;
    let message = not_permitted(&env, "third").await;
    assert!(
        message.contains(&format!(
            "Secret {key_name:?} (the order's pending private key) exists and was not created by certorder"
        )),
        "{message}"
    );
    let after = env.secrets().get(&key_name).await.unwrap();
    assert_eq!((after.resource_version(), after.data), (before.resource_version(), before.data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_a_provider_serves_only_the_namespaces_it_selects() {
    let env = Env::start().await;
    let sim = testbed::ussl::UsslSim::start(USSL_PUBLIC_KEY, USSL_PRIVATE_KEY, env.dns.addr()).await;
    ucloud_provider(&env, &sim, "ucloud", USSL_PRIVATE_KEY).await;
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    let grant = json!({"apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider",
        "metadata": {"name": "ucloud"}, "spec": {"namespaceSelector": {"matchLabels": {"certorder.io/ucloud": "granted"}}}});
    providers.patch("ucloud", &PatchParams::apply("cluster-admin"), &Patch::Apply(grant)).await.unwrap();

    env.apply(ucloud_dv_order("spend", &["spend.example.com"], "ucloud")).await;
    let message = not_permitted(&env, "spend").await;
    assert!(
        message.contains("ClusterCertificateProvider \"ucloud\" is not granted to namespace \"shop\""),
        "{message}"
    );
    assert!(message.contains("certorder.io/ucloud=granted"), "names the rule: {message}");
    assert_eq!(sim.purchases(), 0);
    // `kubectl get ccp` shows whom the provider serves.
    wait_until(|| async {
        providers.get("ucloud").await.unwrap().status.and_then(|s| s.namespaces).as_deref()
            == Some("certorder.io/ucloud=granted")
    })
    .await;

    // The cluster admin grants the provider to the namespace: the order buys.
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let label = json!({"metadata": {"labels": {"certorder.io/ucloud": "granted"}}});
    namespaces.patch(NS, &PatchParams::default(), &Patch::Merge(label)).await.unwrap();
    env.wait_for("spend", "the vendor order id", |o| vendor_id(o).is_some()).await;
    assert_eq!(sim.purchases(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_http_validation_routes_no_host_of_another_namespace_and_runs_the_admins_image() {
    let env = HttpEnv::start(&["blog.example.com"]).await;
    env.provider("auto", "Automatic").await;
    // Another team serves the host from its own namespace.
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "blog"}})).unwrap())
        .await
        .unwrap();
    let theirs: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(env.client.clone(), "blog");
    let ingress = serde_json::from_value(json!({
        "metadata": {"name": "blog-site", "namespace": "blog"},
        "spec": {"ingressClassName": testbed::cluster::INGRESS_CLASS, "rules": [{"host": "blog.example.com",
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "blog-web", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap();
    theirs.create(&PostParams::default(), &ingress).await.unwrap();
    let before = theirs.get("blog-site").await.unwrap();

    // The order's author cannot choose the solver's image: the field is gone from the schema.
    let mut sneaky = with_http(
        dv_order("grab", &["blog.example.com"], "auto"),
        "auto",
        json!({"solverImage": "evil.example.com/miner:1"}),
    );
    let refused =
        env.orders().patch("grab", &PatchParams::apply("e2e-user").validation_strict(), &Patch::Apply(&sneaky)).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("unknown field")), "solverImage must be refused");

    sneaky["spec"]["domainValidation"]["http"] = json!({"ingressClassName": testbed::cluster::INGRESS_CLASS});
    env.apply(sneaky).await;
    let message = not_permitted(&env, "grab").await;
    assert!(message.contains("blog.example.com is served by Ingress blog/blog-site in another namespace"), "{message}");
    assert!(message.contains("allowHostsOfOtherNamespaces"), "{message}");
    assert!(env.published("grab").await.is_empty(), "nothing is published");
    assert_eq!(theirs.get("blog-site").await.unwrap().resource_version(), before.resource_version());

    // The admin allows it on the provider, and sets the solver's image and pull Secret there.
    let providers: Api<ClusterCertificateProvider> = Api::all(env.client.clone());
    let allow = json!({"apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider",
        "metadata": {"name": "auto"}, "spec": {"httpValidation": {"allowHostsOfOtherNamespaces": true,
            "solverImage": "registry.example.com/certorder:tenant", "imagePullSecrets": ["regcred"]}}});
    providers.patch("auto", &PatchParams::apply("cluster-admin"), &Patch::Apply(allow)).await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), NS);
    wait_until(|| async { pods.get_opt("certorder-solver-grab").await.unwrap().is_some() }).await;
    let pod = pods.get("certorder-solver-grab").await.unwrap().spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example.com/certorder:tenant"));
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
    assert_eq!(theirs.get("blog-site").await.unwrap().spec, before.spec, "their Ingress is never changed");
}

// DNS records published by certorder (issue 15): RFC 2136 against a real BIND 9.

impl Env {
    async fn apply_cluster(&self, api: Api<kube::api::DynamicObject>, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply("e2e-user"), &Patch::Apply(object)).await.expect("apply");
    }

    async fn dns_zone(&self, spec: Value, name: &str) {
        let ar = kube::api::ApiResource::erase::<ClusterDNSZone>(&());
        let api: Api<kube::api::DynamicObject> = Api::all_with(self.client.clone(), &ar);
        self.apply_cluster(
            api,
            json!({"apiVersion": "certorder.io/v1alpha1", "kind": "ClusterDNSZone", "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }
}

/// BIND with `example.net` (updatable with the TSIG key; someone else's TXT value already at
/// the name certorder will use) and `static.test` (not updatable: the name a user delegates
/// once, by CNAME, into example.net).
async fn bind_env() -> (Env, testbed::bind::Bind) {
    let (env, bind) = env_with_bind(&[
        testbed::bind::Zone {
            name: "example.net",
            records: &["_dnsauth.www 60 IN TXT \"someone-elses-value\""],
            updatable: true,
        },
        testbed::bind::Zone {
            name: "static.test",
            records: &["_dnsauth.shop 60 IN CNAME shop.acme.example.net."],
            updatable: false,
        },
    ])
    .await;
    rfc2136_zone(&env, &bind).await;
    (env, bind)
}

/// A real BIND 9 serving `zones`, and the operator resolving through it (no `ClusterDNSZone` yet).
async fn env_with_bind(zones: &[testbed::bind::Zone<'_>]) -> (Env, testbed::bind::Bind) {
    let bind = testbed::bind::Bind::start(zones).await;
    let mut env = Env::start_with_controller(false).await;
    env.metrics_port = free_port();
    env.controller = Some(spawn_controller(&env.client, test_config(bind.addr(), env.metrics_port)));
    (env, bind)
}

/// The TSIG key in a Secret, and a `ClusterDNSZone` that publishes `example.net` through BIND.
async fn rfc2136_zone(env: &Env, bind: &testbed::bind::Bind) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "certorder-system");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "dns-tsig", "namespace": "certorder-system"},
        "stringData": {"secret": bind.key_secret},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    env.dns_zone(
        json!({"zone": "example.net", "rfc2136": {
            "nameserver": bind.addr().to_string(), "tsigKeyName": bind.key_name,
            "tsigSecretRef": {"name": "dns-tsig", "namespace": "certorder-system", "key": "secret"}}}),
        "example-net",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_records_are_published_to_bind_and_only_certorders_values_removed() {
    let (env, bind) = bind_env().await;
    env.provider("auto", "Automatic").await;
    // Directly in the zone, and through the one-time CNAME from a zone certorder cannot update.
    env.apply(dv_order("direct", &["www.example.net"], "auto")).await;
    env.apply(dv_order("delegated", &["shop.static.test"], "auto")).await;
    let direct = env.wait_phase("direct", Phase::Issued).await;
    let delegated = env.wait_phase("delegated", Phase::Issued).await;
    assert_verified_secret(&env, "direct-tls", &["www.example.net"], "auto").await;
    assert_verified_secret(&env, "delegated-tls", &["shop.static.test"], "auto").await;
    // Nobody created a record: certorder did, and removed its own values after validation.
    wait_until(|| async {
        let orders = [env.orders().get("direct").await.unwrap(), env.orders().get("delegated").await.unwrap()];
        orders.iter().all(|o| o.status.as_ref().unwrap().published.is_none())
    })
    .await;
    let left = bind.txt("_dnsauth.www.example.net").await;
    assert_eq!(left, ["someone-elses-value"], "the other value at the name stays, certorder's is gone");
    assert!(bind.txt("shop.acme.example.net").await.is_empty(), "the delegated record is removed");
    assert_eq!(bind.txt("_dnsauth.shop.static.test").await, Vec::<String>::new());
    for o in [&direct, &delegated] {
        assert!(o.status.as_ref().unwrap().certificate.is_some());
    }
    // The TSIG secret never shows in logs or status.
    assert!(!captured_logs().contains(&bind.key_secret), "the TSIG secret was logged");
    let status = serde_json::to_string(&env.orders().get("direct").await.unwrap().status).unwrap();
    assert!(!status.contains(&bind.key_secret));
    println!("figures: issued 2 DV orders through BIND (RFC 2136 + CNAME delegation); records left behind: 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_order_mid_validation_removes_its_rfc2136_record() {
    let (env, bind) = bind_env().await;
    // Manual review of a local OV-less DV never validates: the local CA is kept waiting by a
    // zone that publishes while the provider reviews. A DV order on a provider whose review is
    // manual still validates, so hold it in validation by pointing a second name nowhere.
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("halfway", &["www.example.net", "nowhere.static.test"], "auto")).await;
    let validating = env
        .wait_for("halfway", "its record published", |o| {
            o.status.as_ref().is_some_and(|s| s.published.as_ref().is_some_and(|p| !p.dns_records.is_empty()))
        })
        .await;
    let value = validating.status.as_ref().unwrap().challenges[0].expected_value.clone();
    assert!(bind.txt("_dnsauth.www.example.net").await.contains(&value), "published before the self-check");
    let message = validating.status.as_ref().unwrap().message.clone().unwrap_or_default();
    assert!(message.contains("nowhere.static.test"), "the unpublishable record is still shown: {message}");
    env.orders().delete("halfway", &DeleteParams::default()).await.unwrap();
    wait_until(|| async { env.orders().get_opt("halfway").await.unwrap().is_none() }).await;
    assert_eq!(bind.txt("_dnsauth.www.example.net").await, ["someone-elses-value"], "records left behind: 0");
}

/// A DNS order whose zone nobody configured shows the record for a person; when the admin then
/// adds a `ClusterDNSZone`, the order publishes its record there itself and is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_added_later_publishes_the_records_of_a_waiting_order() {
    let (env, bind) =
        env_with_bind(&[testbed::bind::Zone { name: "example.net", records: &[], updatable: true }]).await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("early", &["www.example.net"], "auto")).await;
    let waiting = env
        .wait_for("early", "its first self-check failed", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.challenges.iter().any(|c| c.self_check.as_ref().is_some_and(|c| !c.passed)))
        })
        .await;
    let status = waiting.status.as_ref().unwrap();
    assert!(status.published.as_ref().is_none_or(|p| p.dns_records.is_empty()), "no zone, nothing published");
    assert!(bind.txt("_dnsauth.www.example.net").await.is_empty());
    rfc2136_zone(&env, &bind).await;
    env.wait_for("early", "Issued", |o| o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued)).await;
    env.orders().delete("early", &DeleteParams::default()).await.unwrap();
    wait_until(|| async { env.orders().get_opt("early").await.unwrap().is_none() }).await;
    assert!(bind.txt("_dnsauth.www.example.net").await.is_empty(), "records left behind");
}

/// A value goes into an RFC 2136 zone only once the order's status on the server records the
/// challenge it answers: when the status cannot be written (here every status write is refused,
/// as when a deletion changes the order under a reconcile), nothing is published, and deleting
/// the order then leaves nothing behind. (Before, a renewal published first and wrote after: a
/// conflicting write lost the record of the value, and the finalizer could not remove it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_value_is_never_published_before_status_records_it() {
    use testbed::{FaultAnswer, FaultMatch};
    let (env, bind) = bind_env().await;
    env.provider("auto", "Automatic").await;
    let refused = FaultMatch::default().verb("patch").resource("certificateorders/status").name("unrecorded");
    env.api.faults().reset_counts();
    env.api.faults().inject(refused, FaultAnswer::Conflict, usize::MAX);
    env.apply(dv_order("unrecorded", &["www.example.net"], "auto")).await;
    // Keys are made, the CA answers, the challenges are known; their writes are refused.
    wait_until(|| async { env.api.faults().count("patch", "certificateorders/status") >= 3 }).await;
    assert_eq!(bind.txt("_dnsauth.www.example.net").await, ["someone-elses-value"], "published before recorded");
    env.orders().delete("unrecorded", &DeleteParams::default()).await.unwrap();
    env.api.faults().clear();
    wait_until(|| async { env.orders().get_opt("unrecorded").await.unwrap().is_none() }).await;
    assert_eq!(bind.txt("_dnsauth.www.example.net").await, ["someone-elses-value"], "records left behind");

    // Unhindered, the same order is recorded, published, issued, and cleaned up on deletion.
    env.apply(dv_order("recorded", &["www.example.net"], "auto")).await;
    env.wait_for("recorded", "Issued", |o| o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued)).await;
    env.orders().delete("recorded", &DeleteParams::default()).await.unwrap();
    wait_until(|| async { env.orders().get_opt("recorded").await.unwrap().is_none() }).await;
    assert_eq!(bind.txt("_dnsauth.www.example.net").await, ["someone-elses-value"], "records left behind");
}

/// What a test saw of one order over the years.
#[derive(Default)]
struct Years {
    /// Serials installed in the TLS Secret, with the clock's time when first seen and lifetime.
    installed: Vec<(String, chrono::DateTime<chrono::Utc>, chrono::Duration)>,
    /// Times the installed certificate was expired or not yet valid when looked at.
    lapses: Vec<String>,
    /// Vendor order ids seen: one per purchase.
    purchases: std::collections::BTreeSet<String>,
    /// Times the order waited for a person (Stalled, Failed, Rejected, or a reason only a person answers).
    person_needed: Vec<String>,
    issuances: u32,
    term_renewals: u32,
    /// How long the certificate in place had left when the next one replaced it.
    margins: Vec<chrono::Duration>,
    last_not_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Years {
    /// What was read between `before` and `now` (on the test's clock, which runs fast: a read of
    /// a few milliseconds takes hours).
    fn look(
        &mut self,
        order: &CertificateOrder,
        secret: Option<&Secret>,
        before: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let Some(status) = &order.status else { return };
        if let Some(vendor) = &status.order {
            self.purchases.extend(vendor.id.clone());
            self.issuances = vendor.issuances;
            self.term_renewals = vendor.term_renewals;
        }
        let person = ["InfoRequired", "WaitingForDocuments", "PurchaseUnconfirmed", "ProviderNotReady", "NotPermitted"];
        let stalled = status.condition(certorder::api::ConditionType::Stalled).is_some_and(|c| c.status == "True");
        let reason = status.conditions.first().map(|c| c.reason.clone()).unwrap_or_default();
        if stalled || matches!(status.phase, Phase::Failed | Phase::Rejected) || person.contains(&reason.as_str()) {
            self.person_needed.push(format!("{now}: {:?} {reason}: {:?}", status.phase, status.message));
        }
        let Some(pem) =
            secret.and_then(|s| s.data.as_ref()?.get("tls.crt")).map(|b| String::from_utf8_lossy(&b.0).into_owned())
        else {
            return;
        };
        let leaf = pki::describe_leaf(&pem).expect("the TLS Secret holds a certificate");
        if leaf.not_before > now || leaf.not_after < before {
            self.lapses
                .push(format!("{now}: serial {} valid {} to {}", leaf.serial_hex, leaf.not_before, leaf.not_after));
        }
        if self.installed.last().is_none_or(|(serial, ..)| *serial != leaf.serial_hex) {
            self.margins.extend(self.last_not_after.map(|t| t - now));
            self.last_not_after = Some(leaf.not_after);
            self.installed.push((leaf.serial_hex, now, leaf.not_after - leaf.not_before));
        }
    }

    /// "200d x2, 100d x10, 47d x57": the lifetimes issued, in order.
    fn lifetimes(&self) -> String {
        let mut runs: Vec<(i64, u32)> = Vec::new();
        for (_, _, lifetime) in &self.installed {
            let days = (lifetime.num_hours() + 12) / 24;
            match runs.last_mut() {
                Some((d, n)) if *d == days => *n += 1,
                _ => runs.push((days, 1)),
            }
        }
        runs.iter().map(|(d, n)| format!("{d}d x{n}")).collect::<Vec<_>>().join(", ")
    }
}

/// Issue 15 part 4: five years of a DV order validated by DNS (RFC 2136 to BIND) and one
/// validated over HTTP (through the emulated ingress-nginx), on a clock that runs 750,000 times
/// faster, through the lifetime caps of 2026 (200 days), 2027 (100) and 2029 (47). Nobody does
/// anything; every certificate in the Secrets is valid whenever it is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_years_of_renewals_need_no_person_and_never_lapse() {
    use chrono::TimeZone;
    // A year in 42 s: a month (renewBefore) is 3.5 s, a 47-day certificate is replaced every 2 s.
    const SPEED: u32 = 750_000;
    let start = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let end = start + chrono::Duration::days(5 * 365 + 1);
    let bind = testbed::bind::Bind::start(&[testbed::bind::Zone {
        name: "example.net",
        records: &["web 60 IN A 127.0.0.1"],
        updatable: true,
    }])
    .await;
    let mut env = Env::start_with_controller(false).await;
    let cluster = testbed::cluster::Cluster::start(env.client.clone(), env!("CARGO_BIN_EXE_certorder"))
        .await
        .expect("cluster emulation");
    let clock = certorder::clock::Clock::scaled(start, SPEED);
    let config = certorder::controller::Config {
        http_validation_port: cluster.port(),
        https_validation_port: cluster.https_port(),
        clock,
        ..test_config(bind.addr(), env.metrics_port)
    };
    env.controller = Some(spawn_controller(&env.client, config));
    rfc2136_zone(&env, &bind).await;
    env.apply(json!({
        "apiVersion": "certorder.io/v1alpha1",
        "kind": "ClusterCertificateProvider",
        "metadata": {"name": "years"},
        "spec": {"local": {"caSecretRef": {"name": "years-ca", "namespace": "certorder-system"},
                 "review": "Automatic", "certificateLifetime": "4800h"}},
    }))
    .await;
    let renew_before = |mut order: Value| {
        // A month ahead: far more than an issuance takes, even on a loaded machine.
        order["spec"]["renewBefore"] = json!("720h");
        order
    };
    env.apply(renew_before(dv_order("dns-years", &["www.example.net"], "years"))).await;
    env.apply(renew_before(with_http(
        dv_order("http-years", &["web.example.net"], "years"),
        "years",
        json!({"ingressClassName": testbed::cluster::INGRESS_CLASS}),
    )))
    .await;

    let mut seen: BTreeMap<&str, Years> = BTreeMap::new();
    while clock.now() < end {
        for (order, secret) in [("dns-years", "dns-years-tls"), ("http-years", "http-years-tls")] {
            let before = clock.now();
            let o = env.orders().get(order).await.unwrap();
            let s = env.secrets().get_opt(secret).await.unwrap();
            // Before the first issuance there is nothing to lapse.
            if s.is_some() || o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued) {
                seen.entry(order).or_default().look(&o, s.as_ref(), before, clock.now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The clock runs on and a renewal may be publishing right now: the orders are deleted (their
    // Secrets stay), and then nothing they published may be left.
    let http = HttpEnv { env, cluster };
    for order in ["dns-years", "http-years"] {
        http.orders().delete(order, &DeleteParams::default()).await.unwrap();
        wait_until(|| async { http.orders().get_opt(order).await.unwrap().is_none() }).await;
    }
    assert!(http.secrets().get_opt("dns-years-tls").await.unwrap().is_some(), "the TLS Secret stays");
    assert!(bind.txt("_dnsauth.www.example.net").await.is_empty(), "records left behind");
    assert_eq!(http.published("http-years").await, Vec::<String>::new(), "objects left behind");

    for (order, years) in &seen {
        println!(
            "figures: {order} over 5 years (clock x{SPEED}): {} issuances, {} purchase(s), {} term renewals, {} steps that needed a person, {} lapses, least validity left at a replacement {}h; lifetimes {}",
            years.issuances,
            years.purchases.len(),
            years.term_renewals,
            years.person_needed.len(),
            years.lapses.len(),
            years.margins.iter().min().map_or(0, |m| m.num_hours()),
            years.lifetimes()
        );
    }
    println!("figures: records left behind in BIND: 0; validation objects left: 0 (after deleting the orders)");
    for (order, years) in &seen {
        assert!(years.person_needed.is_empty(), "{order} needed a person: {:#?}", years.person_needed);
        assert!(years.lapses.is_empty(), "{order} lapsed: {:#?}", years.lapses);
        assert_eq!(years.purchases.len(), 1, "{order}: one purchase");
        // A one-year term, renewed for each further year.
        assert!((4..=5).contains(&years.term_renewals), "{order}: {} term renewals", years.term_renewals);
        let lifetimes = years.lifetimes();
        for cap in ["200d", "100d", "47d"] {
            assert!(lifetimes.contains(cap), "{order}: no {cap} certificate in {lifetimes}");
        }
        assert!(years.issuances >= 40, "{order}: {} issuances in five years", years.issuances);
        // The Secret is sampled every few dozen milliseconds: a stall of the test may miss one.
        let seen = years.installed.len() as u32;
        assert!(seen + 2 >= years.issuances, "{order}: {seen} certificates seen of {} issued", years.issuances);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_dotted_path_refused_by_ingress_nginx_is_reported_and_the_default_path_type_works() {
    let env = HttpEnv::start(&["strict.example.com"]).await;
    env.provider("auto", "Automatic").await;
    let exact = with_http(
        dv_order("strict", &["strict.example.com"], "auto"),
        "auto",
        json!({"ingressClassName": testbed::cluster::INGRESS_CLASS, "pathType": "Exact"}),
    );
    env.apply(exact).await;
    let refused = env
        .wait_for("strict", "the Ingress refused", |o| {
            serde_json::to_string(&o.status).unwrap().contains("cannot be used with pathType Exact")
        })
        .await;
    assert_ne!(refused.status.as_ref().unwrap().phase, Phase::Issued);
    // The fix the message points to: the default path type.
    env.apply(with_http(
        dv_order("strict", &["strict.example.com"], "auto"),
        "auto",
        json!({"ingressClassName": testbed::cluster::INGRESS_CLASS}),
    ))
    .await;
    env.wait_phase("strict", Phase::Issued).await;
}

/// An order that sets no pathType gets its provider's: a provider set to `Exact` meets ingress-nginx's
/// refusal of a dotted Exact path, and the admin's fix on the provider lets the order through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_path_type_applies_to_orders_that_set_none() {
    let env = HttpEnv::start(&["strict.example.org"]).await;
    let provider = |path_type: &str| {
        json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "ClusterCertificateProvider",
            "metadata": {"name": "edge"},
            "spec": {"local": {"caSecretRef": {"name": "edge-ca", "namespace": "certorder-system"}, "review": "Automatic"},
                     "httpValidation": {"pathType": path_type}},
        })
    };
    env.apply(provider("Exact")).await;
    env.apply(with_http(
        dv_order("edge", &["strict.example.org"], "edge"),
        "edge",
        json!({"ingressClassName": testbed::cluster::INGRESS_CLASS}),
    ))
    .await;
    env.wait_for("edge", "the Ingress refused", |o| {
        serde_json::to_string(&o.status).unwrap().contains("cannot be used with pathType Exact")
    })
    .await;
    env.apply(provider("ImplementationSpecific")).await;
    env.wait_phase("edge", Phase::Issued).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_dns_publishes_the_orders_dns_endpoint_and_it_is_removed_after_validation() {
    let env = Env::start().await;
    // The cluster has external-dns: its published CRD, and the emulation publishing endpoints.
    let crd: CustomResourceDefinition = serde_yaml::from_str(testbed::cluster::EXTERNAL_DNS_CRD).unwrap();
    Api::<CustomResourceDefinition>::all(env.client.clone()).create(&PostParams::default(), &crd).await.unwrap();
    let external_dns = testbed::cluster::ExternalDns::start(env.client.clone(), env.dns.clone());
    env.dns_zone(json!({"zone": "example.org", "externalDNS": {}}), "example-org").await;
    env.provider("auto", "Automatic").await;
    env.apply(dv_order("edns", &["example.org", "*.example.org", "shop.example.org"], "auto")).await;

    let gvk = kube::api::GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    let endpoints: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints"),
    );
    let published = env
        .wait_for("edns", "its records published", |o| {
            o.status.as_ref().is_some_and(|s| s.published.as_ref().is_some_and(|p| !p.dns_records.is_empty()))
        })
        .await;
    let endpoint = endpoints.get("edns-dcv").await.expect("the order's DNSEndpoint");
    assert_eq!(endpoint.owner_references()[0].name, "edns", "owned by the order");
    let names: Vec<&str> =
        endpoint.data["spec"]["endpoints"].as_array().unwrap().iter().map(|e| e["dnsName"].as_str().unwrap()).collect();
    assert_eq!(names, ["_dnsauth.example.org", "_dnsauth.shop.example.org"]);
    // The apex and its wildcard share one name: both values are published there.
    let apex = &endpoint.data["spec"]["endpoints"][0]["targets"];
    let values: Vec<&String> =
        published.status.as_ref().unwrap().challenges[..2].iter().map(|c| &c.expected_value).collect();
    for v in values {
        assert!(apex.as_array().unwrap().iter().any(|t| t == v.as_str()), "{apex}");
    }

    env.wait_phase("edns", Phase::Issued).await;
    assert_verified_secret(&env, "edns-tls", &["example.org", "*.example.org", "shop.example.org"], "auto").await;
    wait_until(|| async { endpoints.get_opt("edns-dcv").await.unwrap().is_none() }).await;
    wait_until(|| async { external_dns.names().is_empty() }).await;
    println!("figures: external-dns order issued with no person; DNSEndpoints left behind: 0");
}

/// An order stored before the schema tightened (a field of the wrong type) cannot be read by the
/// operator: it is reported on the order with the field and what to fix, and the orders next to
/// it are reconciled as usual. Fixed, it is reconciled like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_order_is_reported_and_does_not_stall_the_others() {
    let mut env = Env::start_with_controller(false).await;
    env.provider("auto", "Automatic").await;
    let mut garbled = dv_order("garbled", &["garbled.example.com"], "auto");
    garbled["spec"]["domains"] = json!("garbled.example.com");
    env.api.put_raw("certorder.io", "certificateorders", garbled);
    env.apply(dv_order("fine", &["fine.example.com"], "auto")).await;
    // The operator's first list already holds the unreadable order.
    env.restart_controller().await;

    let validating = env.wait_phase("fine", Phase::DomainValidation).await;
    env.publish_challenges(&validating).await;
    env.wait_phase("fine", Phase::Issued).await;
    wait_until(|| async { !env.events("garbled", "Unreadable").await.is_empty() }).await;
    let notes = env.events("garbled", "Unreadable").await;
    assert_eq!(notes.len(), 1, "reported once: {notes:?}");
    assert!(
        notes[0]
            .contains("cannot read this CertificateOrder: spec.domains: invalid type: string \"garbled.example.com\""),
        "{notes:?}"
    );
    assert!(notes[0].contains("`kubectl explain certificateorders.spec`"), "{notes:?}");
    let stored = env.api.object("certorder.io", "certificateorders", Some(NS), "garbled").unwrap();
    assert!(stored["status"].is_null(), "an unreadable order is not reconciled: {stored}");

    // Fixed (as `kubectl edit` would), it is read and reconciled.
    let mut fixed = stored.clone();
    fixed["spec"]["domains"] = json!(["garbled.example.com"]);
    env.api.put_raw("certorder.io", "certificateorders", fixed);
    let validating = env.wait_phase("garbled", Phase::DomainValidation).await;
    assert_eq!(validating.status.unwrap().domains, ["garbled.example.com"]);
}
