//! The `certorder` command: parses flags, builds configuration, calls into the library.
//!
//! Also a kubectl plugin: installed (copied or symlinked) as `kubectl-certorder` on the PATH,
//! `kubectl certorder approve NAME -n NS` runs this binary with the same arguments.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certorder::cli::{self, Review, Target};
use certorder::controller::{Config, LeaderElection};
use certorder::lifecycle::Timing;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Buys, validates, installs and renews TLS certificates from order-based vendors.
#[derive(Parser, Debug)]
#[command(name = "certorder", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD with --out-dir).
    Crd {
        /// Write `<group>_<plural>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Approve an OV/EV order waiting for review by a local provider with manual review.
    Approve {
        /// Name of the CertificateOrder.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Reject an OV/EV order waiting for review by a local provider with manual review.
    Reject {
        /// Name of the CertificateOrder.
        name: String,
        /// Why; shown to the order's owner in its status. The order resubmits when its spec changes.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Serve domain-validation files (runs in the solver Pod HTTP validation creates).
    Solver {
        /// Directory of the mounted validation ConfigMap (files named `<domain>_<file>`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8089")]
        listen: SocketAddr,
    },
    /// Ask for the order's certificate to be renewed now.
    Renew {
        /// Name of the CertificateOrder.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// End the doubt about a purchase whose outcome is unknown (condition PurchaseUnconfirmed)
    /// when the vendor's console shows no such order: the order buys once more.
    BuyAgain {
        /// Name of the CertificateOrder.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show what an order did and what it waits for: phase, the exact DNS records or URLs with
    /// what was seen, the certificate, failures, conditions and events.
    Status {
        /// Name of the CertificateOrder.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Run the order's domain self-checks now, as the CA will, and print each result; exits 1
    /// when one fails.
    Check {
        /// Name of the CertificateOrder.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Name servers to ask instead of each zone's authoritative servers (IP[:PORT], comma list).
        #[arg(long, env = "CERTORDER_DNS_SERVERS", value_delimiter = ',', value_parser = parse_name_server)]
        dns_servers: Vec<SocketAddr>,
    },
}

/// Which cluster and namespace, as kubectl picks them.
#[derive(Args, Debug)]
struct TargetArgs {
    /// Namespace of the order [default: the kubeconfig context's namespace].
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Path to a kubeconfig file [default: KUBECONFIG, then ~/.kube/config, then in-cluster].
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use [default: the current context].
    #[arg(long)]
    context: Option<String>,
}

impl From<TargetArgs> for Target {
    fn from(a: TargetArgs) -> Self {
        Target { kubeconfig: a.kubeconfig, context: a.context, namespace: a.namespace }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Namespaces whose orders are watched, comma-separated [default: all].
    #[arg(long, env = "CERTORDER_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Namespace the operator runs in [default: POD_NAMESPACE, else certorder-system].
    #[arg(long, env = "CERTORDER_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "CERTORDER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Name servers for DNS checks, comma-separated IP or IP:port (port 53 when left out)
    /// [default: each zone's authoritative servers, found through the system resolver].
    #[arg(long, env = "CERTORDER_DNS_SERVERS", value_delimiter = ',', value_parser = parse_name_server)]
    dns_servers: Vec<SocketAddr>,
    /// Port the HTTP self-check and the local CA fetch validation files on (what a CA uses: 80).
    #[arg(long, env = "CERTORDER_HTTP_VALIDATION_PORT", default_value_t = 80,
          value_parser = clap::value_parser!(u16).range(1..))]
    http_validation_port: u16,
    /// Image of the HTTP validation solver Pod [default: the operator's own image].
    #[arg(long, env = "CERTORDER_SOLVER_IMAGE", default_value = certorder::controller::DEFAULT_SOLVER_IMAGE)]
    solver_image: String,
    /// Secrets (in each order's namespace) the solver Pods pull their image with, comma-separated
    /// [default: none]. A provider's spec.httpValidation.imagePullSecrets overrides them.
    #[arg(long, env = "CERTORDER_SOLVER_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    solver_image_pull_secrets: Vec<String>,
    /// pathType of HTTP validation paths in Ingresses, for orders and providers that set none:
    /// ImplementationSpecific (ingress-nginx ≥ 1.12, GCE), Exact or Prefix.
    #[arg(long, env = "CERTORDER_INGRESS_PATH_TYPE", default_value = "ImplementationSpecific", value_parser = parse_path_type)]
    ingress_path_type: certorder::api::IngressPathType,
    /// Orders reconciled at once.
    #[arg(long, env = "CERTORDER_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// First re-check of a failing domain self-check; doubles up to --self-check-max.
    #[arg(long, env = "CERTORDER_SELF_CHECK_INITIAL", default_value_t = HumanDuration(Timing::default().self_check_initial))]
    self_check_initial: HumanDuration,
    /// Longest wait between domain self-checks.
    #[arg(long, env = "CERTORDER_SELF_CHECK_MAX", default_value_t = HumanDuration(Timing::default().self_check_max))]
    self_check_max: HumanDuration,
    /// Polling of the vendor while the CA reviews the organization.
    #[arg(long, env = "CERTORDER_REVIEW_POLL", default_value_t = HumanDuration(Timing::default().review_poll))]
    review_poll: HumanDuration,
    /// Polling of the vendor while it validates domains.
    #[arg(long, env = "CERTORDER_VALIDATION_POLL", default_value_t = HumanDuration(Timing::default().validation_poll))]
    validation_poll: HumanDuration,
    /// Looking again for a missing confirmation letter Secret.
    #[arg(long, env = "CERTORDER_LETTER_POLL", default_value_t = HumanDuration(Timing::default().letter_poll))]
    letter_poll: HumanDuration,
    /// First retry after a transient failure; doubles up to --backoff-max.
    #[arg(long, env = "CERTORDER_BACKOFF_INITIAL", default_value_t = HumanDuration(Timing::default().backoff_initial))]
    backoff_initial: HumanDuration,
    /// Longest wait between retries after transient failures.
    #[arg(long, env = "CERTORDER_BACKOFF_MAX", default_value_t = HumanDuration(Timing::default().backoff_max))]
    backoff_max: HumanDuration,
    /// Several replicas, one active: act only while holding the Lease named by --leader-election-lease.
    #[arg(long, env = "CERTORDER_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the leader Lease, in the operator's namespace.
    #[arg(long, env = "CERTORDER_LEADER_ELECTION_LEASE", default_value = "certorder")]
    leader_election_lease: String,
    /// This replica's name in the Lease [default: POD_NAME, else the host name and process id].
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// How long the Lease lasts after its last renewal: the longest a dead leader blocks the others.
    #[arg(long, env = "CERTORDER_LEASE_DURATION", default_value_t = HumanDuration(Duration::from_secs(15)))]
    lease_duration: HumanDuration,
    /// How long before the Lease ends the leader renews it.
    #[arg(long, env = "CERTORDER_LEASE_RENEW_GRACE", default_value_t = HumanDuration(Duration::from_secs(5)))]
    lease_renew_grace: HumanDuration,
    /// Log line format.
    #[arg(long, env = "CERTORDER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `info,certorder=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

impl RunArgs {
    /// The controller's configuration; `pod_namespace` is the POD_NAMESPACE variable, if set.
    fn config(&self, pod_namespace: Option<String>) -> anyhow::Result<Config> {
        let timing = self.timing()?;
        let leader_election = self.leader_election()?;
        Ok(Config {
            leader_election,
            watch_namespaces: non_empty(self.watch_namespaces.iter().map(|ns| ns.trim().to_string())),
            namespace: self.namespace(pod_namespace),
            metrics_addr: self.metrics_addr,
            dns_servers: self.dns_servers.clone(),
            http_validation_port: self.http_validation_port,
            https_validation_port: 443,
            solver_image: self.solver_image.clone(),
            solver_image_pull_secrets: non_empty(self.solver_image_pull_secrets.iter().cloned()),
            ingress_path_type: self.ingress_path_type,
            concurrency: self.concurrency,
            timing,
            clock: certorder::clock::Clock::system(),
        })
    }

    /// The polls and backoffs; each first wait no longer than its longest.
    fn timing(&self) -> anyhow::Result<Timing> {
        let timing = Timing {
            self_check_initial: self.self_check_initial.0,
            self_check_max: self.self_check_max.0,
            review_poll: self.review_poll.0,
            validation_poll: self.validation_poll.0,
            letter_poll: self.letter_poll.0,
            backoff_initial: self.backoff_initial.0,
            backoff_max: self.backoff_max.0,
        };
        for (initial, max, names) in [
            (timing.self_check_initial, timing.self_check_max, "--self-check-initial is longer than --self-check-max"),
            (timing.backoff_initial, timing.backoff_max, "--backoff-initial is longer than --backoff-max"),
        ] {
            if initial > max {
                bail!(
                    "{names} ({} > {}); lower the first or raise the second",
                    HumanDuration(initial),
                    HumanDuration(max)
                );
            }
        }
        Ok(timing)
    }

    /// `--namespace`, else POD_NAMESPACE, else `certorder-system`.
    fn namespace(&self, pod_namespace: Option<String>) -> String {
        self.namespace
            .clone()
            .or(pod_namespace)
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "certorder-system".into())
    }

    /// The Lease to hold with `--leader-elect`; this replica's identity defaults to the host name
    /// and process id.
    fn leader_election(&self) -> anyhow::Result<Option<LeaderElection>> {
        if self.lease_renew_grace.0 >= self.lease_duration.0 {
            bail!(
                "--lease-renew-grace ({}) must be shorter than --lease-duration ({})",
                self.lease_renew_grace,
                self.lease_duration
            );
        }
        Ok(self.leader_elect.then(|| LeaderElection {
            lease_name: self.leader_election_lease.clone(),
            identity: self.leader_election_identity.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            }),
            lease_duration: self.lease_duration.0,
            renew_grace: self.lease_renew_grace.0,
        }))
    }
}

/// The values of a comma-separated flag, without empty ones.
fn non_empty(values: impl Iterator<Item = String>) -> Vec<String> {
    values.filter(|v| !v.is_empty()).collect()
}

/// `ImplementationSpecific`, `Exact` or `Prefix`.
fn parse_path_type(s: &str) -> Result<certorder::api::IngressPathType, String> {
    certorder::api::IngressPathType::parse(s.trim())
        .ok_or_else(|| format!("{s:?} is not an Ingress pathType: use ImplementationSpecific, Exact or Prefix"))
}

/// `IP` or `IP:port` (`[v6]:port`); port 53 when left out.
fn parse_name_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "{s:?} is not a name server address; write an IP address, optionally with a port: 10.0.0.10, 10.0.0.10:53, [fd00::10]:53"
    ))
}

/// A flag's duration, written as `30s`, `5m`, `2h`, `1h30m`, `500ms` or `1d` (see
/// [`certorder::duration::parse_flag_duration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HumanDuration(Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        certorder::duration::parse_flag_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    /// The shortest form that parses back: `1h30m`, `2m`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// `kubectl certorder …` runs the binary as `kubectl-certorder`; help then shows that name.
fn parse_cli() -> Cli {
    let invoked_as = std::env::args_os().next().map(PathBuf::from);
    let as_plugin = invoked_as
        .as_deref()
        .and_then(|p| p.file_stem())
        .is_some_and(|stem| stem.to_string_lossy().ends_with("kubectl-certorder"));
    let mut command = Cli::command();
    if as_plugin {
        command = command.bin_name("kubectl certorder");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn init_tracing(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).with_context(|| {
        format!("--log-level {filter:?} is not a valid filter; try `info` or `info,certorder=debug`")
    })?;
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// The operator allocates with mimalloc: with glibc's malloc (one arena, to keep its memory
/// down) a quarter of the operator's CPU at 1,000 orders went to malloc and free, 11% of it
/// waiting for the arena's lock between the runtime's threads. mimalloc keeps a heap per thread
/// and took the operator's CPU per order down by about a sixth, for about 3 MiB more at 10,000
/// orders (issue 16).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    certorder::no_huge_pages();
    let cli = parse_cli();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The command runs as a task of the runtime's workers, not on this thread: the controller's
    // reconciles and watch streams are polled inside it, and on this thread every wake-up by a
    // worker (an answer, a watch event) went through a futex to unpark it, 4.5% of the operator's
    // CPU at 1,000 orders.
    match runtime.block_on(runtime.spawn(command(cli.command))) {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(e.into()),
    }
}

async fn command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run(&args).await,
        Command::Crd { out_dir } => crd(out_dir),
        Command::Solver { dir, listen } => {
            init_tracing(LogFormat::Text, "info")?;
            certorder::validation::solver::run(dir, listen).await
        }
        Command::Approve { name, target } => review(name, target, Review::Approve).await,
        Command::Reject { name, reason, target } => review(name, target, Review::Reject { reason }).await,
        Command::Status { name, target } => status(name, target).await,
        Command::Check { name, target, dns_servers } => check(name, target, dns_servers).await,
        Command::Renew { name, target } => {
            let (client, namespace) = cli::connect(&target.into()).await?;
            println!("{}", cli::renew(client, &namespace, &name, chrono::Utc::now()).await?);
            Ok(())
        }
        Command::BuyAgain { name, target } => {
            let (client, namespace) = cli::connect(&target.into()).await?;
            println!("{}", cli::buy_again(client, &namespace, &name, chrono::Utc::now()).await?);
            Ok(())
        }
    }
}

async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let config = args.config(std::env::var("POD_NAMESPACE").ok())?;
    init_tracing(args.log_format, &args.log_level)?;
    let client = kube::Client::try_default()
        .await
        .context("cannot connect to Kubernetes (no kubeconfig and not in a cluster)")?;
    tracing::info!(?config, "starting the controller");
    certorder::controller::run(client, config).await
}

/// Prints the CRDs, or writes one file each into `out_dir`.
fn crd(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(dir) = out_dir else {
        print!("{}", certorder::crdgen::render_all());
        return Ok(());
    };
    for path in certorder::crdgen::write_dir(&dir).with_context(|| format!("cannot write {}", dir.display()))? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn review(name: String, target: TargetArgs, review: Review) -> anyhow::Result<()> {
    let (client, namespace) = cli::connect(&target.into()).await?;
    println!("{}", cli::review(client, &namespace, &name, review).await?);
    Ok(())
}

async fn status(name: String, target: TargetArgs) -> anyhow::Result<()> {
    let (client, namespace) = cli::connect(&target.into()).await?;
    print!("{}", cli::status(client, &namespace, &name).await?);
    Ok(())
}

/// Exits 1 when a check fails.
async fn check(name: String, target: TargetArgs, dns_servers: Vec<SocketAddr>) -> anyhow::Result<()> {
    let (client, namespace) = cli::connect(&target.into()).await?;
    let (report, passed) = cli::check(client, &namespace, &name, dns_servers).await?;
    print!("{report}");
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Duration, String> {
        s.parse::<HumanDuration>().map(|h| h.0)
    }

    #[test]
    fn durations_parse_like_people_write_them() {
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1d2h"), Ok(Duration::from_secs(93600)));
        assert_eq!(d("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(d(" 10s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bad_durations_say_how_to_write_them() {
        for (input, want) in [
            ("30", "has no unit"),
            ("5x", "unknown unit \"x\""),
            ("m5", "is not a duration"),
            ("", "empty duration"),
            ("0s", "is zero"),
            ("1.5h", "unknown unit \".\""),
            ("99999999999999999999h", "too long"),
        ] {
            let err = d(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn durations_print_in_the_form_they_parse_from() {
        for s in ["2s", "2m", "10m", "1h30m", "1d", "500ms", "1m5s"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["certorder", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(a) => Ok(*a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn run_defaults_are_the_library_defaults() {
        let config = run_args(&[]).unwrap().config(None).unwrap();
        let want = Config::default();
        assert_eq!(config.timing, want.timing);
        assert_eq!(config.namespace, "certorder-system");
        assert_eq!(config.metrics_addr, want.metrics_addr);
        assert_eq!(config.concurrency, want.concurrency);
        assert_eq!(config.http_validation_port, 80);
        assert_eq!(config.solver_image, want.solver_image);
        assert_eq!(config.ingress_path_type, want.ingress_path_type);
        assert!(config.watch_namespaces.is_empty() && config.dns_servers.is_empty());
    }

    #[test]
    fn run_flags_build_the_config() {
        let args = run_args(&[
            "--watch-namespaces",
            "web, shop",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--dns-servers",
            "127.0.0.1:5353,10.0.0.10,[::1]:53",
            "--concurrency",
            "4",
            "--review-poll",
            "1h30m",
            "--backoff-initial",
            "1s",
            "--backoff-max",
            "1m",
            "--log-format",
            "json",
            "--ingress-path-type",
            "Exact",
        ])
        .unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
        let config = args.config(Some("ops".into())).unwrap();
        assert_eq!(config.watch_namespaces, ["web", "shop"]);
        assert_eq!(config.namespace, "ops");
        assert_eq!(config.metrics_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(
            config.dns_servers,
            [
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "10.0.0.10:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.timing.review_poll, Duration::from_secs(5400));
        assert_eq!(config.timing.backoff_initial, Duration::from_secs(1));
        assert_eq!(config.timing.backoff_max, Duration::from_secs(60));
        assert_eq!(config.ingress_path_type, certorder::api::IngressPathType::Exact);
    }

    #[test]
    fn the_namespace_flag_wins_over_pod_namespace() {
        let config = run_args(&["--namespace", "mine"]).unwrap().config(Some("ops".into())).unwrap();
        assert_eq!(config.namespace, "mine");
    }

    #[test]
    fn bad_run_flags_are_refused_with_the_reason() {
        let err = run_args(&["--review-poll", "10"]).unwrap_err().to_string();
        assert!(err.contains("has no unit"), "{err}");
        let err = run_args(&["--dns-servers", "ns1.example.com"]).unwrap_err().to_string();
        assert!(err.contains("is not a name server address"), "{err}");
        let err = run_args(&["--ingress-path-type", "exact"]).unwrap_err().to_string();
        assert!(err.contains("use ImplementationSpecific, Exact or Prefix"), "{err}");
        let err = run_args(&["--concurrency", "0"]).unwrap_err().to_string();
        assert!(err.contains("0"), "{err}");
        let err = run_args(&["--backoff-initial", "10m", "--backoff-max", "1m"]).unwrap().config(None).unwrap_err();
        assert!(err.to_string().contains("--backoff-initial is longer than --backoff-max (10m > 1m)"), "{err}");
    }

    #[test]
    fn tools_take_kubectl_style_flags() {
        let cli = Cli::try_parse_from([
            "kubectl-certorder",
            "reject",
            "shop",
            "-n",
            "web",
            "--reason",
            "wrong company",
            "--context",
            "prod",
        ])
        .unwrap();
        match cli.command {
            Command::Reject { name, reason, target } => {
                assert_eq!((name.as_str(), reason.as_str()), ("shop", "wrong company"));
                assert_eq!(target.namespace.as_deref(), Some("web"));
                assert_eq!(target.context.as_deref(), Some("prod"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["certorder", "reject", "shop"]).is_err(), "--reason is required");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
    #[test]
    fn the_readme_lists_every_run_flag_with_its_env_and_default() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        let mut problems = Vec::new();
        for arg in run.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let Some(line) = readme.lines().find(|l| l.starts_with(&format!("| `--{long}"))) else {
                problems.push(format!("no row for --{long}"));
                continue;
            };
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !line.contains(&format!("[`{env}`]")) {
                    problems.push(format!("--{long}: env {env} missing"));
                }
            }
            for default in arg.get_default_values() {
                let default = default.to_string_lossy();
                if !line.contains(&format!("`{default}`")) {
                    problems.push(format!("--{long}: default `{default}` missing"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "README.md's `certorder run` flags table is out of date:\n  {}",
            problems.join("\n  ")
        );
    }
}
