//! Try certorder without a cluster: starts the testbed API server and a DNS server for
//! example.com, runs the operator against them, applies `crds/` and `examples/` with the real
//! kubectl, and shows the orders moving through their phases to Issued — publishing the DNS
//! records they ask for and approving the OV order on the way, as a person would.
//!
//!     cargo run --example demo                 # keeps running; poke at it with the printed kubeconfig
//!     cargo run --example demo -- --exit       # stops once every order is issued

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use certorder::api::{CertificateOrder, Phase};
use certorder::tools::Review;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use testbed::ApiServer;
use testbed::dns::TestDns;

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    println!("$ kubectl {}", args.join(" "));
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit_when_done = std::env::args().any(|a| a == "--exit");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let api = ApiServer::start().await;
    let dns = TestDns::start(&["example.com"]).await?;
    let kubeconfig = api.kubeconfig_path();
    println!("testbed API server at {} (kubeconfig: {})", api.https_url(), kubeconfig.display());
    println!("test DNS server for example.com at {}\n", dns.addr());

    kubectl(&kubeconfig, &["apply", "-f", &root.join("crds").to_string_lossy()], None)?;
    kubectl(&kubeconfig, &["wait", "--for", "condition=established", "crd/certificateorders.certorder.io"], None)?;
    kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: certorder-system\n"),
    )?;

    let config = certorder::controller::Config {
        metrics_addr: "127.0.0.1:0".parse()?,
        dns_servers: vec![dns.addr()],
        ..Default::default()
    };
    let client = api.client();
    let controller = tokio::spawn(certorder::controller::run(client.clone(), config));
    println!("\ncertorder is running (in this process, as `certorder run` would)\n");
    kubectl(&kubeconfig, &["apply", "-f", &root.join("examples").to_string_lossy()], None)?;
    println!();

    let orders: Api<CertificateOrder> = Api::all(client.clone());
    let mut phases: BTreeMap<String, Phase> = BTreeMap::new();
    // Every TXT value asked for at each name, across orders (a wildcard and its apex share one).
    let mut records: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut approved = std::collections::HashSet::new();
    let started = Instant::now();
    let mut stream = watcher(orders.clone(), watcher::Config::default()).applied_objects().boxed();
    while let Some(order) =
        tokio::time::timeout(Duration::from_secs(120), stream.try_next()).await??.map(Some).unwrap_or(None)
    {
        let name = order.name_any();
        let ns = order.namespace().unwrap_or_default();
        let Some(status) = &order.status else { continue };
        if phases.get(&name) != Some(&status.phase) {
            phases.insert(name.clone(), status.phase);
            println!(
                "[{:>5.1}s] {ns}/{name:<22} {:<19} {}",
                started.elapsed().as_secs_f64(),
                status.phase.as_str(),
                status.message.as_deref().unwrap_or_default()
            );
        }
        for c in &status.challenges {
            let values = records.entry(c.target.clone()).or_default();
            if values.insert(c.expected_value.clone()) {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                dns.set_txt(&c.target, &refs).await?;
                println!("         DNS: TXT {} += {:?} (as your DNS provider would)", c.target, c.expected_value);
            }
        }
        if status.phase == Phase::OrganizationReview && approved.insert(name.clone()) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("$ kubectl certorder approve {name} -n {ns}");
            println!("{}", certorder::tools::review(client.clone(), &ns, &name, Review::Approve).await?);
        }
        let all = orders.list(&Default::default()).await?;
        if !all.items.is_empty()
            && all.items.iter().all(|o| o.status.as_ref().is_some_and(|s| s.phase == Phase::Issued))
        {
            break;
        }
    }
    println!();
    kubectl(&kubeconfig, &["get", "certorders", "-A"], None)?;
    kubectl(&kubeconfig, &["get", "secrets", "-n", "default", "-l", "app.kubernetes.io/managed-by=certorder"], None)?;
    if exit_when_done {
        controller.abort();
        return Ok(());
    }
    println!("\nEverything is issued. The testbed keeps running; try:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get certorders -A -w");
    println!("  kubectl get certorder example-com -o yaml");
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    controller.abort();
    Ok(())
}
