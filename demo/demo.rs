//! Try certorder without a cluster. The demo starts the testbed — an in-memory API server that the
//! real kubectl talks to, a DNS server for example.com and example.org, an emulated cluster (a
//! kubelet that runs solver Pods and an ingress controller that routes by Ingress host and path)
//! and a simulator of UCloud's USSL API — runs the operator against it, applies `crds/` and every
//! file in `examples/` with kubectl, and shows the orders moving through their phases to Issued,
//! doing on the way what a person would: creating the TXT records the DNS orders list, and approving
//! the OV order's review.
//!
//!     cargo run --example demo                 # keeps running; poke at it with the printed kubeconfig
//!     cargo run --example demo -- --exit       # stops once every order is issued; exit code 1 if
//!                                              # one is not issued in time (named on stderr)
//!
//! The emulated kubelet runs solver Pods by starting this very program as `demo solver --dir …`,
//! which serves the files exactly as `certorder solver` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use certorder::api::{CertificateOrder, Phase};
use certorder::cli::Review;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use testbed::ApiServer;
use testbed::dns::TestDns;
use testbed::ussl::UsslSim;

/// The key pair in `examples/ucloud-provider.yaml`, which the demo's USSL simulator accepts.
const EXAMPLE_PUBLIC_KEY: &str = "REPLACE-WITH-YOUR-PUBLIC-KEY";
const EXAMPLE_PRIVATE_KEY: &str = "REPLACE-WITH-YOUR-PRIVATE-KEY";
/// How long `--exit` waits for every order to be issued.
const DEADLINE: Duration = Duration::from_secs(180);

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    if stdin.is_none() {
        println!("$ kubectl {}", args.join(" "));
    }
    let mut child = Command::new("kubectl")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run kubectl ({e}): the demo needs kubectl on the PATH"))?;
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        anyhow::bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// Every file of `examples/`, as one YAML stream for `kubectl apply -f -`, with the UCloud
/// provider's endpoint pointed at the simulator (whose CA it trusts); and the names HTTP orders validate (which must
/// resolve to the ingress controller).
fn examples(dir: &Path, ussl_endpoint: &str, ussl_ca: &str) -> anyhow::Result<(String, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut stream = String::new();
    let mut http_names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let mut object = serde_yaml::Value::deserialize(document)?;
            if object.get("kind").and_then(|k| k.as_str()) == Some("ClusterCertificateProvider")
                && let Some(ucloud) = object.get_mut("spec").and_then(|s| s.get_mut("ucloud"))
            {
                ucloud["endpoint"] = ussl_endpoint.into();
                ucloud["caBundle"] = ussl_ca.into();
            }
            if object.get("kind").and_then(|k| k.as_str()) == Some("CertificateOrder")
                && object["spec"]["domainValidation"]["method"].as_str() == Some("HTTP")
            {
                let domains = object["spec"]["domains"].as_sequence().cloned().unwrap_or_default();
                http_names.extend(domains.iter().filter_map(|d| d.as_str().map(String::from)));
            }
            stream.push_str("---\n");
            stream.push_str(&serde_yaml::to_string(&object)?);
        }
    }
    Ok((stream, http_names))
}

use serde::Deserialize;

/// What the demo remembers of each order, to print only what changed.
#[derive(Default)]
struct Watched {
    phases: BTreeMap<String, Phase>,
    /// Every TXT value asked for at each name, across orders (a wildcard and its apex share one).
    records: BTreeMap<String, BTreeSet<String>>,
    urls: BTreeSet<String>,
    approved: BTreeSet<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("solver") {
        return solver(&args[2..]).await;
    }
    let exit_when_done = args.iter().any(|a| a == "--exit");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_runtime=error,kube_client=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();

    let api = ApiServer::start().await;
    let dns = TestDns::start(&["example.com", "example.org"]).await?;
    let cluster = testbed::cluster::Cluster::start(api.client(), std::env::current_exe()?).await?;
    let ussl = UsslSim::start(EXAMPLE_PUBLIC_KEY, EXAMPLE_PRIVATE_KEY, dns.addr()).await;
    ussl.set_http_target(cluster.addr());
    let kubeconfig = api.kubeconfig_path();
    println!("The testbed (nothing here is a real cluster or vendor):");
    println!("  API server          {}  (kubeconfig: {})", api.https_url(), kubeconfig.display());
    println!("  DNS server          {}  (zones example.com, example.org)", dns.addr());
    println!("  ingress controller  {}  (class nginx; solver Pods run as local processes)", cluster.addr());
    println!("  UCloud USSL         {}  (a simulator; it accepts the example's placeholder keys)\n", ussl.endpoint());

    kubectl(&kubeconfig, &["apply", "-f", "crds/"], None)?;
    kubectl(&kubeconfig, &["wait", "--for", "condition=established", "crd/certificateorders.certorder.io"], None)?;
    kubectl(&kubeconfig, &["create", "namespace", "certorder-system"], None)?;

    let config = certorder::controller::Config {
        metrics_addr: "127.0.0.1:0".parse()?,
        dns_servers: vec![dns.addr()],
        http_validation_port: cluster.port(),
        timing: certorder::lifecycle::Timing {
            self_check_initial: Duration::from_millis(500),
            self_check_max: Duration::from_secs(5),
            review_poll: Duration::from_secs(2),
            validation_poll: Duration::from_secs(2),
            letter_poll: Duration::from_secs(2),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        },
        ..Default::default()
    };
    let client = api.client();
    let controller = tokio::spawn(certorder::controller::run(client.clone(), config));
    println!(
        "\ncertorder is running in this process, as `certorder run` would, polling every 2 s rather than minutes\n"
    );

    let (stream, http_names) = examples(&root.join("examples"), &ussl.endpoint(), &ussl.ca_pem())?;
    for name in &http_names {
        dns.set_a(name, std::net::Ipv4Addr::LOCALHOST).await?;
        println!("DNS: A {name} = 127.0.0.1 (the HTTP order's names point at the ingress controller)");
    }
    println!(
        "$ kubectl apply -f examples/   (spec.ucloud.endpoint set to {}, and spec.ucloud.caBundle to its CA)",
        ussl.endpoint()
    );
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&stream))?;
    println!();

    let orders: Api<CertificateOrder> = Api::all(client.clone());
    let mut watched = Watched::default();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut events = watcher(orders.clone(), watcher::Config::default()).applied_objects().boxed();
    loop {
        let order = match tokio::time::timeout_at(deadline, events.try_next()).await {
            Ok(next) => next?.ok_or_else(|| anyhow::anyhow!("the watch of orders ended"))?,
            Err(_) => {
                let all = orders.list(&Default::default()).await?;
                for o in all.items.iter().filter(|o| !issued(o)) {
                    let status = o.status.as_ref();
                    eprintln!(
                        "not issued after {} s: {}/{} is {} ({})",
                        DEADLINE.as_secs(),
                        o.namespace().unwrap_or_default(),
                        o.name_any(),
                        status.map(|s| s.phase.as_str()).unwrap_or("new"),
                        status.and_then(|s| s.message.as_deref()).unwrap_or_default()
                    );
                }
                controller.abort();
                std::process::exit(1);
            }
        };
        show(&order, &mut watched, &dns, &client, started).await?;
        let all = orders.list(&Default::default()).await?;
        if !all.items.is_empty() && all.items.iter().all(issued) {
            break;
        }
    }
    println!("\nEvery order is issued, {:.1} s after the start.\n", started.elapsed().as_secs_f64());
    kubectl(&kubeconfig, &["get", "certorders", "-A"], None)?;
    println!();
    kubectl(&kubeconfig, &["get", "secrets", "-A", "-l", "app.kubernetes.io/managed-by=certorder"], None)?;
    if exit_when_done {
        controller.abort();
        return Ok(());
    }
    println!("\nThe testbed keeps running. In another terminal, try:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get certorders -A -w");
    println!("  kubectl describe certorder example-com");
    println!("  kubectl get certorder api-example-com -o yaml");
    println!(
        "  kubectl get secret example-com-tls -o jsonpath='{{.data.tls\\.crt}}' | base64 -d | openssl x509 -noout -text"
    );
    println!("  kubectl get ccp");
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    controller.abort();
    Ok(())
}

fn issued(order: &CertificateOrder) -> bool {
    order.status.as_ref().is_some_and(|s| s.phase == Phase::Issued)
}

/// Prints what changed in `order`, and does what a person would: creates the TXT records it asks
/// for, and approves an OV/EV order waiting for the built-in CA's review.
async fn show(
    order: &CertificateOrder,
    watched: &mut Watched,
    dns: &TestDns,
    client: &kube::Client,
    started: Instant,
) -> anyhow::Result<()> {
    let name = order.name_any();
    let ns = order.namespace().unwrap_or_default();
    let Some(status) = &order.status else { return Ok(()) };
    if watched.phases.get(&name) != Some(&status.phase) {
        watched.phases.insert(name.clone(), status.phase);
        println!(
            "[{:>5.1}s] {ns}/{name:<22} {:<19} {}",
            started.elapsed().as_secs_f64(),
            status.phase.as_str(),
            status.message.as_deref().unwrap_or_default()
        );
    }
    for c in &status.challenges {
        match c.method {
            certorder::api::ValidationMethod::DNS => {
                let values = watched.records.entry(c.target.clone()).or_default();
                if values.insert(c.expected_value.clone()) {
                    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                    dns.set_txt(&c.target, &refs).await?;
                    println!("         DNS: TXT {} += {:?} (as your DNS provider would)", c.target, c.expected_value);
                }
            }
            certorder::api::ValidationMethod::HTTP => {
                if watched.urls.insert(c.target.clone()) {
                    println!("         HTTP: {} → {:?} (published by certorder)", c.target, c.expected_value);
                }
            }
        }
    }
    let manual_review = order.spec.provider_ref.name == "local";
    if manual_review && status.phase == Phase::OrganizationReview && watched.approved.insert(name.clone()) {
        println!("$ kubectl certorder approve {name} -n {ns}");
        println!("{}", certorder::cli::review(client.clone(), &ns, &name, Review::Approve).await?);
    }
    Ok(())
}

/// `demo solver --dir DIR --listen ADDR`: what `certorder solver` does, for the emulated kubelet.
async fn solver(args: &[String]) -> anyhow::Result<()> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let dir = value("--dir").ok_or_else(|| anyhow::anyhow!("solver: --dir DIR is required"))?;
    let listen = value("--listen").unwrap_or_else(|| "0.0.0.0:8089".into());
    certorder::validation::solver::run(dir.into(), listen.parse()?).await
}
