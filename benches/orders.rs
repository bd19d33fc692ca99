//! Benchmark: N DV orders (default 1,000) with the local provider, automatic review and DNS
//! validation, through the real `certorder` binary against the testbed. Prints figures; asserts
//! nothing about time.
//!
//!     cargo bench --bench orders                     # 1,000 orders, 60 s settle window
//!     BENCH_ORDERS=200 BENCH_SETTLE_SECS=10 cargo bench --bench orders
//!     BENCH_STORM=1 cargo bench --bench orders       # 10 s of API faults, the operator killed every 2 s
//!     BENCH_ORDERS=10000 BENCH_SECRETS=50000 cargo bench --bench orders   # memory at scale
//!
//! Knobs (environment): `BENCH_ORDERS` (1000), `BENCH_SETTLE_SECS` (60), `BENCH_STORM` (0),
//! `BENCH_SECRETS` (0: unrelated 1 KiB Secrets created in the orders' namespace before the
//! operator starts), `BENCH_CONCURRENCY` (32: order creates in flight), `BENCH_SELF_CHECK_INITIAL`
//! (`100ms`: the operator's `--self-check-initial`; the test DNS answers at once),
//! `BENCH_UCLOUD_ORDERS` (20: DV orders of a UCloud provider against the USSL simulator, after the
//! local ones; 0 skips them) and `BENCH_UCLOUD_RATE` (10: the provider's `requestsPerSecond`, and
//! the simulator's limit, beyond which it refuses calls with RetCode 153). `BENCH_OPERATOR` runs
//! another `certorder` binary (a copy of an earlier build, for before/after figures);
//! `BENCH_DUMP=1` prints an issued order as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certorder::api::{CertificateOrder, ClusterCertificateProvider, ClusterDNSZone, Phase};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, CustomResourceExt, ResourceExt};
use serde_json::json;
use testbed::dns::TestDns;
use testbed::{ApiServer, ApiServerOptions};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NS: &str = "bench";
const ZONE: &str = "bench.test";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_text(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Peak resident set of a process, from /proc (Linux), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) a process has used, from /proc (Linux; 100 ticks a second).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 (after pid, comm, state).
    (ticks(11) + ticks(12)) / 100.0
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn writes(counts: &BTreeMap<(String, String), u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((verb, resource), n) in counts {
        if matches!(verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection") {
            *out.entry(format!("{verb} {resource}")).or_default() += n;
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // As the operator does: mimalloc's memory in huge pages cost the API server a fifth of its CPU.
    certorder::no_huge_pages();
    let orders_wanted = env_number("BENCH_ORDERS", 1000) as usize;
    let settle = Duration::from_secs(env_number("BENCH_SETTLE_SECS", 60));
    let unrelated_secrets = env_number("BENCH_SECRETS", 0) as usize;
    let concurrency = env_number("BENCH_CONCURRENCY", 32).max(1) as usize;
    let self_check_initial = env_text("BENCH_SELF_CHECK_INITIAL", "100ms");
    let ucloud_orders = env_number("BENCH_UCLOUD_ORDERS", 20) as usize;
    let ucloud_rate = env_number("BENCH_UCLOUD_RATE", 10).max(1);
    let load_at_start = load_average();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let api = ApiServer::start_with(ApiServerOptions {
        history_window: 200_000 + unrelated_secrets + 20 * orders_wanted,
        ..ApiServerOptions::default()
    })
    .await?;
    let dns = Arc::new(TestDns::start(&[ZONE]).await?);
    let client = api.client();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Every CRD the chart installs.
    for crd in [CertificateOrder::crd(), ClusterCertificateProvider::crd(), ClusterDNSZone::crd()] {
        crds.create(&PostParams::default(), &crd).await?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, "certorder-system"] {
        namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}}))?).await?;
    }
    // Unrelated Secrets (1 KiB each) next to the orders, there before the operator starts.
    let secrets_started = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..unrelated_secrets)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("unrelated-{i}"), "namespace": NS, "labels": {"app": "unrelated"}},
                    "type": "Opaque",
                    "stringData": {"payload": "x".repeat(1024)},
                }))
                .expect("secret literal");
                secrets.create(&PostParams::default(), &secret).await.map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    if unrelated_secrets > 0 {
        eprintln!(
            "... {unrelated_secrets} unrelated Secrets created in {:.1} s",
            secrets_started.elapsed().as_secs_f64()
        );
    }
    let providers: Api<ClusterCertificateProvider> = Api::all(client.clone());
    providers
        .patch(
            "local-auto",
            &PatchParams::apply("bench"),
            &Patch::Apply(json!({
                "apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider",
                "metadata": {"name": "local-auto"},
                "spec": {"local": {"caSecretRef": {"name": "local-auto-ca", "namespace": "certorder-system"}, "review": "Automatic"}},
            })),
        )
        .await?;

    let storm = std::env::var("BENCH_STORM").is_ok_and(|v| v == "1");
    let binary = env_text("BENCH_OPERATOR", env!("CARGO_BIN_EXE_certorder"));
    // A fixed metrics port, so the figures can read the operator's reconcile and step counts.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let metrics_arg = metrics_addr.to_string();
    let start_operator = || -> std::io::Result<Operator> {
        Ok(Operator(
            Command::new(&binary)
                .args([
                    "run",
                    "--metrics-addr",
                    &metrics_arg,
                    "--dns-servers",
                    &dns.addr().to_string(),
                    "--log-level",
                    "error",
                    "--self-check-initial",
                    &self_check_initial,
                ])
                .env("KUBECONFIG", api.kubeconfig_path())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        ))
    };
    let mut operator = start_operator()?;

    // The benchmark's one watch of the orders (a second one would double its decoding): it
    // publishes each order's TXT records as soon as the status lists them, and removes them once
    // the order is Issued, like a person (or external-dns) would, and reports every order that
    // is Issued. (A zone keeping every record ever published would make the test DNS server's
    // answers slower and slower: hickory looks through all records for a name it lacks.)
    let orders: Api<CertificateOrder> = Api::namespaced(client.clone(), NS);
    let (issued_tx, mut issued_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let publisher = {
        let orders = orders.clone();
        let dns = dns.clone();
        tokio::spawn(async move {
            // Each order's published records, by order.
            let mut published: HashMap<String, HashSet<(String, String)>> = HashMap::new();
            // The storm's dropped watches and 410s are errors of the stream, after which it goes on.
            let mut stream = watcher(orders, watcher::Config::default()).default_backoff().applied_objects().boxed();
            while let Some(order) = stream.next().await {
                let Ok(order) = order else { continue };
                let Some(status) = &order.status else { continue };
                let name = order.name_any();
                if status.phase == Phase::Issued {
                    if issued_tx.send(name.clone()).is_err() {
                        break;
                    }
                    for (target, _) in published.remove(&name).unwrap_or_default() {
                        let _ = dns.remove_txt(&target).await;
                    }
                    continue;
                }
                for c in &status.challenges {
                    if published.entry(name.clone()).or_default().insert((c.target.clone(), c.expected_value.clone())) {
                        let _ = dns.set_txt(&c.target, &[c.expected_value.as_str()]).await;
                    }
                }
            }
        })
    };

    api.faults().reset_counts();
    let operator_cpu_before = cpu_seconds(&operator.0.id().to_string());
    let own_cpu_before = cpu_seconds("self");
    let started = Instant::now();
    futures::stream::iter(0..orders_wanted)
        .map(|i| {
            let orders = orders.clone();
            async move {
                let order: CertificateOrder = serde_json::from_value(json!({
                    "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
                    "metadata": {"name": format!("o{i}"), "namespace": NS},
                    "spec": {"providerRef": {"name": "local-auto"}, "product": {"type": "DV"},
                             "domains": [format!("o{i}.{ZONE}")], "secretName": format!("o{i}-tls")},
                }))
                .expect("order literal");
                orders.create(&PostParams::default(), &order).await.map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let created = started.elapsed();

    // Wait for every order to be Issued, as the watch reports them. In a storm, the first ten
    // seconds bring API faults, and the operator is killed and restarted every two.
    let mut issued = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut restarts = 0;
    let mut next_storm = Instant::now();
    while issued.len() < orders_wanted {
        if storm && started.elapsed() < Duration::from_secs(10) && Instant::now() >= next_storm {
            use testbed::{FaultAnswer, FaultMatch};
            let faults = api.faults();
            faults.set_latency(Duration::from_millis(10));
            faults.inject(
                FaultMatch::default().verb("patch").resource("certificateorders/status"),
                FaultAnswer::InternalError,
                20,
            );
            faults.inject(
                FaultMatch::default().verb("create").resource("secrets"),
                FaultAnswer::TooManyRequests { retry_after_secs: 1 },
                20,
            );
            faults.inject(FaultMatch::default().verb("patch").resource("secrets"), FaultAnswer::InternalError, 20);
            if restarts % 2 == 0 {
                api.drop_watches();
            } else {
                api.compact();
            }
            drop(operator);
            operator = start_operator()?;
            restarts += 1;
            next_storm = Instant::now() + Duration::from_secs(2);
        } else if storm && started.elapsed() >= Duration::from_secs(10) {
            api.faults().clear();
        }
        let next = tokio::time::timeout(Duration::from_secs(2), issued_rx.recv()).await;
        match next {
            Ok(Some(name)) => {
                issued.insert(name);
            }
            Ok(None) => break,
            Err(_) if !storm => eprintln!(
                "... {} of {orders_wanted} issued after {:.1} s",
                issued.len(),
                started.elapsed().as_secs_f64()
            ),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let elapsed = started.elapsed();
    let counts = api.faults().counts();
    let pid = operator.0.id();
    let rss_at_issue = peak_rss_mib(pid);
    let operator_cpu = cpu_seconds(&pid.to_string()) - operator_cpu_before;
    let own_cpu = cpu_seconds("self") - own_cpu_before;

    println!("== certorder benchmark: {orders_wanted} DV orders, local provider, automatic review, DNS validation");
    println!(
        "machine: {cores} cores, load average at start {load_at_start}; {unrelated_secrets} unrelated Secrets; creates in flight {concurrency}; --self-check-initial {self_check_initial}"
    );
    println!("operator binary: {binary}");
    if storm {
        println!(
            "storm: API faults (500s, 429s, dropped watches, 410 Gone, latency) for 10 s; the operator killed {restarts} times (peak RSS below is the last process's)"
        );
    }
    println!("orders created in          {:>8.2} s", created.as_secs_f64());
    println!(
        "all issued after           {:>8.2} s  ({} of {orders_wanted} issued)",
        elapsed.as_secs_f64(),
        issued.len()
    );
    println!("orders per second          {:>8.1}", issued.len() as f64 / elapsed.as_secs_f64());
    let per_order = |seconds: f64| seconds * 1000.0 / orders_wanted.max(1) as f64;
    println!(
        "CPU per order              {:>8.2} ms operator, {:.2} ms testbed (API server, DNS and the benchmark's clients)",
        per_order(operator_cpu),
        per_order(own_cpu)
    );
    println!("CPU in all                 {operator_cpu:>8.2} s operator, {own_cpu:.2} s testbed");
    if let Some(rss) = rss_at_issue {
        println!("operator peak RSS          {rss:>8.1} MiB");
    }
    if let Some(rss) = peak_rss_mib(std::process::id()) {
        println!("testbed peak RSS           {rss:>8.1} MiB");
    }
    println!("API requests per order (all clients; the benchmark's own creates and watches included):");
    let mut by_verb: BTreeMap<&str, u64> = BTreeMap::new();
    for ((verb, _), n) in &counts {
        *by_verb.entry(verb.as_str()).or_default() += n;
    }
    for (verb, n) in &by_verb {
        println!("  {verb:<18} {:>8.2}", *n as f64 / orders_wanted as f64);
    }
    println!("API reads per order by resource (get and list; all clients):");
    for ((verb, resource), n) in counts.iter().filter(|((verb, _), _)| verb == "get" || verb == "list") {
        println!("  {:<32} {:>6.2}", format!("{verb} {resource}"), *n as f64 / orders_wanted as f64);
    }
    println!("operator writes per order through issuance:");
    let mut total = 0;
    for (what, n) in writes(&counts) {
        // The benchmark itself creates each order once.
        let n = if what == "create certificateorders" { n.saturating_sub(orders_wanted as u64) } else { n };
        if n == 0 {
            continue;
        }
        total += n;
        println!("  {what:<32} {:>6.2}", n as f64 / orders_wanted as f64);
    }
    println!("  {:<32} {:>6.2}", "total", total as f64 / orders_wanted as f64);
    if !storm {
        print_reconciles(metrics_addr, orders_wanted);
    }
    // What the operator caches of an issued order, and of its TLS Secret (without its data).
    if let Ok(order) = orders.get("o0").await {
        let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len());
        let json = serde_json::to_value(&order)?;
        let fields: Vec<String> = json["status"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k} {}", size(v))).collect())
            .unwrap_or_default();
        println!("an issued order as JSON: {} bytes (status fields: {})", size(&json), fields.join(", "));
        if std::env::var("BENCH_DUMP").is_ok() {
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }

    api.faults().reset_counts();
    tokio::time::sleep(settle).await;
    let after = writes(&api.faults().counts());
    let settled: u64 = after.values().sum();
    println!("API writes in the {} s after all were issued: {settled} {after:?}", settle.as_secs());
    // Counted after the settle window: the last order's Issued event may still be on its way
    // when its status says Issued.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for event in events.list(&Default::default()).await?.items {
        *reasons.entry(event.reason.unwrap_or_default()).or_default() += 1;
    }
    println!("events by reason: {reasons:?}");
    if let Some(rss) = peak_rss_mib(pid) {
        println!("operator peak RSS (end)    {rss:>8.1} MiB");
    }
    if ucloud_orders > 0 && !storm {
        ucloud(&api, &dns, &orders, &mut issued_rx, ucloud_orders, ucloud_rate).await?;
    }
    publisher.abort();
    drop(operator);
    Ok(())
}

/// The operator's reconciles and steps per order, from its `/metrics` (a process restarted in a
/// storm starts counting again, so only calm runs print them).
fn print_reconciles(addr: std::net::SocketAddr, orders: usize) {
    use std::io::{Read, Write};
    let mut text = String::new();
    let read = std::net::TcpStream::connect(addr).and_then(|mut s| {
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")?;
        s.read_to_string(&mut text)
    });
    if let Err(e) = read {
        println!("reconciles per order: the operator's metrics could not be read ({e})");
        return;
    }
    let per_order = |n: f64| n / orders.max(1) as f64;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    if let Some(line) = text.lines().find(|l| l.starts_with("certorder_reconcile_duration_seconds_count")) {
        println!("reconciles per order       {:>8.2}", per_order(value(line)));
    }
    let steps: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("certorder_steps_total{"))
        .filter_map(|l| {
            let step = l.split("step=\"").nth(1)?.split('"').next()?;
            let result = l.split("result=\"").nth(1)?.split('"').next()?;
            Some(format!("{step} {result} {:.2}", per_order(value(l))))
        })
        .collect();
    println!("steps per order: {}", steps.join(", "));
}

/// `count` DV orders of a UCloud provider against the USSL simulator, whose rate limit is the
/// provider's `requestsPerSecond`: vendor calls per order, and calls refused with 153.
async fn ucloud(
    api: &ApiServer,
    dns: &TestDns,
    orders: &Api<CertificateOrder>,
    issued_names: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    count: usize,
    rate: u64,
) -> anyhow::Result<()> {
    const PUBLIC: &str = "bench@example.com";
    const PRIVATE: &str = "bench-private-key";
    let sim = testbed::ussl::UsslSim::start(PUBLIC, PRIVATE, dns.addr()).await;
    sim.set_review(testbed::ussl::Review::Automatic);
    sim.set_rate_limit(rate as u32);
    let client = api.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "certorder-system");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "ussl-credentials", "namespace": "certorder-system"},
                "stringData": {"PublicKey": PUBLIC, "PrivateKey": PRIVATE},
            }))?,
        )
        .await?;
    let providers: Api<ClusterCertificateProvider> = Api::all(client.clone());
    providers
        .patch(
            "ussl",
            &PatchParams::apply("bench"),
            &Patch::Apply(json!({
                "apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider",
                "metadata": {"name": "ussl"},
                "spec": {"ucloud": {
                    "endpoint": sim.endpoint(),
                    "credentialsSecretRef": {"name": "ussl-credentials", "namespace": "certorder-system"},
                    "requestsPerSecond": rate,
                    "caBundle": sim.ca_pem(),
                    "validationPollInterval": "2s",
                    "defaults": {
                        "organization": {"name": "Example Trading Co., Ltd.", "division": "IT", "address": "1 Example Road",
                            "city": "Shanghai", "region": "Shanghai", "country": "CN", "phone": "+86-21-5555-0100"},
                        "applicant": {"name": "Han Meimei", "phone": "+86 139 0000 0000", "email": "han.meimei@example.com", "title": "IT Manager"},
                    },
                }},
            })),
        )
        .await?;
    let started = Instant::now();
    for i in 0..count {
        let order: CertificateOrder = serde_json::from_value(json!({
            "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
            "metadata": {"name": format!("u{i}"), "namespace": NS},
            "spec": {"providerRef": {"name": "ussl"},
                     "product": {"brand": "TrustAsia", "name": "TrustAsiaDVG5", "type": "DV"},
                     "domains": [format!("u{i}.{ZONE}")], "secretName": format!("u{i}-tls")},
        }))?;
        orders.create(&PostParams::default(), &order).await?;
    }
    let wanted: HashSet<String> = (0..count).map(|i| format!("u{i}")).collect();
    let mut issued = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while issued.len() < count && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), issued_names.recv()).await {
            Ok(Some(name)) => {
                if wanted.contains(&name) {
                    issued.insert(name);
                }
            }
            Ok(None) => break,
            Err(_) => eprintln!(
                "... {} of {count} UCloud orders issued after {:.1} s",
                issued.len(),
                started.elapsed().as_secs_f64()
            ),
        }
    }
    println!(
        "== {count} UCloud DV orders against the USSL simulator, requestsPerSecond {rate} (the simulator's limit too)"
    );
    println!(
        "all issued after           {:>8.2} s  ({} of {count} issued)",
        started.elapsed().as_secs_f64(),
        issued.len()
    );
    println!("vendor calls per order     {:>8.2}", sim.total_calls() as f64 / count as f64);
    println!("purchases                  {:>8}", sim.purchases());
    println!("refused with 153 (rate)    {:>8}", sim.rate_limited());
    Ok(())
}
