//! certorder end to end: the real controller against the testbed's API server and DNS server,
//! driven the way a user would (kubectl-shaped objects, the `certorder` CLI for reviews).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use certorder::api::{CertificateOrder, ClusterCertificateProvider, Phase};
use certorder::lifecycle::Timing;
use certorder::pki::{self, PrivateKey};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::{json, Value};
use testbed::dns::TestDns;
use testbed::ApiServer;

const NS: &str = "shop";

struct Env {
    api: ApiServer,
    dns: TestDns,
    client: Client,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

impl Env {
    async fn start() -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let api = ApiServer::start().await;
        let dns = TestDns::start(&["example.com", "example.org"]).await.expect("test DNS");
        let client = api.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [CertificateOrder::crd(), ClusterCertificateProvider::crd()] {
            crds.create(&PostParams::default(), &crd).await.expect("create CRD");
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in [NS, "certorder-system"] {
            let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces.create(&PostParams::default(), &object).await.expect("create namespace");
        }
        let config = certorder::controller::Config {
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            dns_servers: vec![dns.addr()],
            timing: Timing {
                self_check_initial: Duration::from_millis(200),
                self_check_max: Duration::from_secs(1),
                backoff_initial: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                letter_poll: Duration::from_secs(1),
                ..Timing::default()
            },
            ..Default::default()
        };
        let controller_client = client.clone();
        let controller = tokio::spawn(async move {
            if let Err(e) = certorder::controller::run(controller_client, config).await {
                panic!("controller stopped: {e:#}");
            }
        });
        Env { api, dns, client, controller }
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
                panic!("order {name} never reached {what}; status: {}", serde_json::to_string_pretty(&order.status).unwrap());
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
    let info = pki::verify_issued(&text("tls.crt"), &key, &domains, chrono::Utc::now(), Some(&[ca_pem.clone()]))
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
        .wait_for("acme", "waiting for the letter", |o| o.status.as_ref().is_some_and(|s| s.phase == Phase::InfoSubmitted))
        .await;
    assert!(waiting.status.as_ref().unwrap().message.as_deref().unwrap().contains("acme-letter"), "{:?}", waiting.status);
    assert!(has_condition(&waiting, "Purchased", "True"));
    assert!(has_condition(&waiting, "InfoSubmitted", "True"));

    env.apply(letter_secret()).await;
    let in_review = env.wait_phase("acme", Phase::OrganizationReview).await;
    assert!(has_condition(&in_review, "DocumentsUploaded", "True"));
    assert!(has_condition(&in_review, "Ready", "False"));
    // Domain validation runs beside the review: the challenges are already listed.
    let challenges = &in_review.status.as_ref().unwrap().challenges;
    assert_eq!(challenges.len(), 2);
    assert!(challenges.iter().all(|c| c.target == "_dnsauth.shop.example.com" || c.target == "_dnsauth.www.shop.example.com"));

    let out = env.cli(&["approve", "acme", "-n", NS]);
    assert!(out.status.success(), "approve: {}", String::from_utf8_lossy(&out.stderr));

    let validating = env.wait_phase("acme", Phase::DomainValidation).await;
    assert!(has_condition(&validating, "OrganizationVerified", "True"));
    let first = &validating.status.as_ref().unwrap().challenges[0];
    let check = env
        .wait_for("acme", "a failing self-check", |o| {
            o.status.as_ref().is_some_and(|s| s.challenges.iter().any(|c| c.self_check.as_ref().is_some_and(|c| !c.passed)))
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
    assert!(status.renewal_time.is_some());

    let secret = assert_verified_secret(&env, "acme-tls", &["shop.example.com", "www.shop.example.com"], "manual").await;
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

    let out = env.cli(&["reject", "acme", "-n", NS, "--reason", "the company name does not match the business licence"]);
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
    let secret = assert_verified_secret(&env, "site-tls", &["example.org", "*.example.org", "xn--bcher-kva.example.com"], "auto").await;
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
    wait_until(|| async { env.orders().get_opt("done").await.unwrap().is_none() && env.orders().get_opt("halfway").await.unwrap().is_none() }).await;
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
