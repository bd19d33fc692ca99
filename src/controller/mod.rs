//! The kube-runtime Controller: observe → decide (the pure lifecycle) → act → one status write.
//!
//! It watches orders, the Secrets it labelled (never every Secret in the cluster) and providers;
//! reads come from those caches, `managedFields` stripped. Requeues come from the lifecycle's
//! decision; nothing hot-loops.

/// `impl Resource for $wrapper<K>`: the API resource of `K` (kind, group, version, plural and
/// scope), whose metadata `|$w| $meta` and `|$w| $meta_mut` find in the wrapper `$w`. For the
/// types the API is read through (`guard::Guarded`, `answer::Answer`).
macro_rules! resource_as_inner {
    ($wrapper:ident, |$w:ident| $meta:expr, |$wm:ident| $meta_mut:expr) => {
        impl<K: kube::Resource> kube::Resource for $wrapper<K> {
            type DynamicType = K::DynamicType;
            type Scope = K::Scope;

            fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                K::kind(dt)
            }

            fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                K::group(dt)
            }

            fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                K::version(dt)
            }

            fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                K::plural(dt)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                let $w = self;
                $meta
            }

            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                let $wm = self;
                $meta_mut
            }
        }
    };
}

mod act;
mod answer;
mod cache;
mod context;
mod dns_publish;
pub mod fence;
mod guard;
mod lean;
pub mod metrics;
mod objects;
mod observe;
mod publish;
mod secrets;
pub mod tenancy;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, warn};

pub use context::Context;
pub use objects::pending_key_secret_name;

use act::{Done, StepInput};
use answer::Answer;
use cache::CachedOrder;
use observe::Observation;

use crate::api::{
    BUY_AGAIN_ANNOTATION, CertificateInfo, CertificateOrder, CertificateOrderStatus, Challenge,
    ClusterCertificateProvider, ClusterDNSZone, ConditionType, FINALIZER, MANAGED_BY_LABEL, MANAGER, Phase,
    RENEW_ANNOTATION, SelfCheck, ValidationMethod, VendorOrder,
};
use crate::lifecycle::{
    self, Decision, OrderView, Outcome, ProviderObs, Step, StepError, absorb, decide, normalize_domains, summarize,
};
use crate::provider::{OrderContext, Provider};
use crate::validation::dns::{DnsChecker, DnsCheckerConfig};
use crate::validation::http::SOLVER_LABEL;

/// Everything `certorder run` is configured with, parsed once by `main.rs`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// Namespace the operator runs in (Leases, default place of provider Secrets).
    pub namespace: String,
    /// Address of the metrics and health endpoints.
    pub metrics_addr: SocketAddr,
    /// Name servers for DNS self-checks and the local CA's checks; empty means the system's
    /// resolver finds each zone's authoritative servers.
    pub dns_servers: Vec<SocketAddr>,
    /// Orders reconciled at once.
    pub concurrency: u16,
    /// Port the HTTP self-check and the local CA fetch validation files on (80 in real life;
    /// tests point it at an emulated ingress).
    pub http_validation_port: u16,
    /// Port of `https` URLs the self-check and the local CA are redirected to (443 in real life).
    pub https_validation_port: u16,
    /// Image of the HTTP validation solver Pod (the operator's own image).
    pub solver_image: String,
    /// Secrets (in each order's namespace) for pulling the solver image.
    pub solver_image_pull_secrets: Vec<String>,
    /// `pathType` of validation paths in Ingresses when neither the order nor its provider says.
    pub ingress_path_type: crate::api::IngressPathType,
    /// Timing of polls and backoff.
    pub timing: crate::lifecycle::Timing,
    /// Several replicas, one active: the controller runs only while it holds this Lease.
    pub leader_election: Option<LeaderElection>,
    /// Where decisions read the time; the system clock but in tests that run years in minutes.
    pub clock: crate::clock::Clock,
}

/// Leader election through a `coordination.k8s.io` Lease in the operator's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    pub lease_name: String,
    /// This replica's name in the Lease (the Pod's name).
    pub identity: String,
    /// How long the Lease lasts after its last renewal: the longest a dead leader blocks the others.
    pub lease_duration: Duration,
    /// How long before the end of the Lease the leader renews it.
    pub renew_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            watch_namespaces: Vec::new(),
            namespace: "certorder-system".into(),
            metrics_addr: "0.0.0.0:8080".parse().expect("static address"),
            dns_servers: Vec::new(),
            concurrency: 16,
            http_validation_port: 80,
            https_validation_port: 443,
            solver_image: DEFAULT_SOLVER_IMAGE.into(),
            solver_image_pull_secrets: Vec::new(),
            ingress_path_type: crate::api::IngressPathType::ImplementationSpecific,
            timing: crate::lifecycle::Timing::default(),
            leader_election: None,
            clock: crate::clock::Clock::system(),
        }
    }
}

/// The operator's own image, which also runs `certorder solver`.
pub const DEFAULT_SOLVER_IMAGE: &str = concat!("ghcr.io/certorder/certorder:", env!("CARGO_PKG_VERSION"));

/// How long after writing a TLS Secret its absence from the cache is taken for the cache's lag.
const SECRET_CACHE_LAG: Duration = Duration::from_secs(10);

/// Most steps one reconcile takes before it writes and looks again.
const MAX_STEPS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A bug: the cache wrote the bytes it cannot read back.
    #[error("the cached order does not decode: {0}")]
    Cache(#[from] serde_json::Error),
}

impl Error {
    fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Cache(_) => "cache",
        }
    }
}

/// A Kubernetes API error as a step's error, `what` saying what was being done. A request the
/// server refuses as bad or forbidden (400, 403, 422) fails the same way until something
/// changes; anything else (a conflict, a timeout, a server away) may pass on a retry.
pub(crate) fn classify(what: &str, e: kube::Error) -> StepError {
    let message = format!("{what}: {e}");
    match &e {
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => StepError::permanent(message),
        _ => StepError::transient(message),
    }
}

/// Runs the controller until the process is told to stop.
pub async fn run(client: Client, config: Config) -> anyhow::Result<()> {
    let dns_config = if config.dns_servers.is_empty() {
        DnsCheckerConfig::default()
    } else {
        DnsCheckerConfig::with_nameservers(config.dns_servers.clone())
    };
    let dns = Arc::new(DnsChecker::new(dns_config)?);
    let metrics = Arc::new(metrics::Metrics::default());
    let metrics_server = tokio::spawn(metrics::serve(config.metrics_addr, metrics.clone()));
    // With leader election every write goes through the fence: it closes, on this replica's own
    // clock, a margin (half the renew grace) before the last renewal it sent runs out.
    let fence = match &config.leader_election {
        None => fence::Fence::open(),
        Some(election) => fence::Fence::for_lease(
            &config.namespace,
            &election.lease_name,
            election.lease_duration,
            election.renew_grace / 2,
        ),
    };
    let client = fence.wrap(client);
    let leadership = match &config.leader_election {
        None => None,
        Some(election) => {
            // A standby replica is healthy and ready to take over.
            metrics.set_ready();
            Some(lead(&client, election, &config.namespace).await?)
        }
    };

    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let labelled = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}")).any_semantic();

    // Providers are cluster-scoped and few.
    let (providers, provider_writer) = reflector::store::<ClusterCertificateProvider>();
    // An object that cannot be read is reported and left out, never stalls the watch (see guard).
    let provider_watch = watcher(
        Api::<guard::Guarded<ClusterCertificateProvider>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff();
    let provider_stream =
        guard::readable(provider_watch, providers.clone(), client.clone()).reflect(provider_writer).applied_objects();

    let mut controllers: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    // DNS zones are cluster-scoped and few; DNS orders read them at each publication.
    let zones = watch_dns_zones(&client, &mut controllers);
    let mut provider_ctx = None;
    // Ready (for /readyz) once every cache has done its first full list: with no orders at all
    // there may never be a reconcile to wait for.
    let mut caches: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    let provider_cache = providers.clone();
    caches.push(Box::pin(async move { synced(&provider_cache).await }));
    // One provider registry for the whole process: one client, rate limit and claims per provider.
    let registry = Arc::new(crate::provider::registry::Registry::default());
    for ns in namespaces {
        let orders: Api<guard::Guarded<CertificateOrder>> = scoped(&client, ns.as_deref());
        // Every watched object is decoded without its managedFields (see lean; orders and
        // providers through guard).
        let secrets: Api<lean::Lean<Secret>> = scoped(&client, ns.as_deref());
        // The Secret cache keeps only what reconciles read of each Secret (see secrets).
        let secret_cache = Arc::new(secrets::SecretCache::default());
        let cache = secret_cache.clone();
        let secret_stream = watcher(secrets, labelled.clone())
            .default_backoff()
            .try_filter_map(move |event| futures::future::ready(Ok(cache.absorb(lean::event(event)))))
            .touched_objects();
        // The cache keeps each order compressed (see cache): reconciles decode the one they read.
        let (order_store, order_writer) = reflector::store::<CachedOrder>();
        metrics.watch_orders(order_store.clone());
        let (source, index) = (registry.order_source(), registry.clone());
        let order_watch = watcher(orders, watcher::Config::default().any_semantic()).default_backoff();
        let order_stream = guard::readable(order_watch, order_store.clone(), client.clone())
            .modify(trim_order)
            .map_ok(move |event| {
                index.order_event(source, &event);
                cache::compress(event)
            })
            .reflect(order_writer)
            .applied_objects();
        // Solver Pods of HTTP validation (metadata only, by label): a Pod that disappears is
        // published again.
        let (pod_store, pod_writer) = reflector::store::<PartialObjectMeta<Pod>>();
        let solver_pods = format!("{MANAGED_BY_LABEL}={MANAGER},{SOLVER_LABEL}");
        let pod_stream = watcher(
            scoped::<lean::Lean<PartialObjectMeta<Pod>>>(&client, ns.as_deref()),
            watcher::Config::default().labels(&solver_pods).any_semantic(),
        )
        .default_backoff()
        .map_ok(lean::event)
        .reflect(pod_writer)
        .touched_objects();
        let (order_cache, secrets_cache) = (order_store.clone(), secret_cache.clone());
        caches.push(Box::pin(async move {
            synced(&order_cache).await;
            secrets_cache.synced().await;
        }));
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                config.clone(),
                secret_cache,
                providers.clone(),
                dns.clone(),
                metrics.clone(),
                registry.clone(),
            )
            .with_solver_pods(pod_store)
            .with_fence(fence.clone())
            .with_dns_zones(zones.clone()),
        );
        ctx.forget_deleted_orders(order_store.clone());
        provider_ctx.get_or_insert_with(|| ctx.clone());
        // The watch event of a status this process wrote wakes no reconcile (`Context::acted_on`).
        let own = ctx.clone();
        let order_stream = order_stream.try_filter(move |order| futures::future::ready(!own.acted_on(order)));
        let controller = Controller::for_stream(order_stream, order_store)
            .watches_stream(secret_stream, |secret: Secret| {
                let order = crate::api::owning_order(&secret.metadata)?;
                Some(ObjectRef::new(&order).within(&secret.namespace()?))
            })
            .watches_stream(pod_stream, |pod: PartialObjectMeta<Pod>| {
                let order = crate::api::owning_order(&pod.metadata)?;
                Some(ObjectRef::new(&order).within(&pod.namespace()?))
            })
            .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx)
            .for_each(move |result| {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile did not complete");
                }
                futures::future::ready(())
            });
        controllers.push(Box::pin(controller));
    }
    // The providers' own status (Ready, and why not) is kept by a controller of their own, so a
    // provider shows whether it can be used before any order names it.
    if let Some(ctx) = provider_ctx {
        let providers_controller = Controller::for_stream(provider_stream, providers.clone())
            .shutdown_on_signal()
            .run(reconcile_provider, |_, _: &Error, _| Action::requeue(PROVIDER_RECHECK_NOT_READY), ctx)
            .for_each(|_| futures::future::ready(()));
        controllers.push(Box::pin(providers_controller));
    }
    let ready_metrics = metrics.clone();
    tokio::spawn(async move {
        futures::future::join_all(caches).await;
        ready_metrics.set_ready();
        info!("caches synced; ready");
    });
    info!(namespaces = ?config.watch_namespaces, "certorder controller started");
    let all = futures::future::join_all(controllers);
    let result = match leadership {
        None => {
            all.await;
            Ok(())
        }
        Some(mut lease) => tokio::select! {
            _ = all => Ok(()),
            _ = fence.closed() => {
                Err(anyhow::anyhow!("could not renew the leader Lease in time: stopped every write and vendor call before it could pass to another replica; exiting (the Pod restarts and stands by)"))
            }
            _ = lease.wait_for(|leading| !*leading) => {
                Err(anyhow::anyhow!("lost the leader Lease; stopping so that only one replica acts (the Pod restarts and stands by)"))
            }
        },
    };
    // Dropping the Lease's channel releases it, so a standby replica takes over at once.
    metrics_server.abort();
    result
}

/// Caches the `ClusterDNSZone`s (the watch runs among `tasks`). Without the CRD the watch
/// retries quietly and the zones are listed (and found missing) when an order publishes.
fn watch_dns_zones(client: &Client, tasks: &mut Vec<futures::future::BoxFuture<'static, ()>>) -> context::ZoneCache {
    let (store, writer) = reflector::store::<ClusterDNSZone>();
    let synced_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let zones = context::ZoneCache { store: store.clone(), synced: synced_flag.clone() };
    let stream =
        watcher(Api::<lean::Lean<ClusterDNSZone>>::all(client.clone()), watcher::Config::default().any_semantic())
            .default_backoff()
            .map_ok(lean::event)
            .reflect(writer)
            .for_each(|_| futures::future::ready(()));
    tasks.push(Box::pin(stream));
    tokio::spawn(async move {
        synced(&store).await;
        synced_flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    zones
}

/// How often a provider that cannot be used is looked at again (its credentials Secret or CA may
/// have been fixed; those Secrets are the user's and not watched), and a usable one.
const PROVIDER_RECHECK_NOT_READY: Duration = Duration::from_secs(10);
const PROVIDER_RECHECK_READY: Duration = Duration::from_secs(600);

/// Builds the provider (once per generation, shared with the orders) and reports in its status
/// whether it can be used.
async fn reconcile_provider(provider: Arc<ClusterCertificateProvider>, ctx: Arc<Context>) -> Result<Action, Error> {
    Ok(match ctx.provider(&provider.name_any()).await {
        Ok(_) => Action::requeue(PROVIDER_RECHECK_READY),
        Err(_) => Action::requeue(PROVIDER_RECHECK_NOT_READY),
    })
}

/// Waits until this replica holds the Lease, renewing it in the background from then on.
async fn lead(
    client: &Client,
    election: &LeaderElection,
    namespace: &str,
) -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_duration.as_secs().max(2))
        .with_grace(election.renew_grace.as_secs().max(1))
        .with_field_manager(format!("{MANAGER}-leader-election"))
        .build()
        .await?;
    let (mut leading, _task) = manager.watch().await;
    info!(lease = %format!("{namespace}/{}", election.lease_name), identity = %election.identity, "standing by for the leader Lease");
    leading.wait_for(|leading| *leading).await?;
    info!(identity = %election.identity, "leading: this replica acts");
    Ok(leading)
}

/// What the order cache keeps: all reconcile reads, without the copy of the spec `kubectl apply`
/// leaves in an annotation (`managedFields` are not decoded: see lean).
fn trim_order(order: &mut CertificateOrder) {
    order.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// A watch event of `A`s as one of `B`s.
fn map_event<A, B>(event: watcher::Event<A>, mut f: impl FnMut(A) -> B) -> watcher::Event<B> {
    use watcher::Event::*;
    match event {
        Init => Init,
        InitDone => InitDone,
        InitApply(object) => InitApply(f(object)),
        Apply(object) => Apply(f(object)),
        Delete(object) => Delete(f(object)),
    }
}

/// Waits until a cache has done its first full list. The store's readiness signal wakes only
/// one of its waiters (the controller waits on the same store), so look again now and then.
pub(crate) async fn synced<K: kube::runtime::reflector::Lookup + Clone + 'static>(
    store: &kube::runtime::reflector::Store<K>,
) where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await.is_err() {}
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether the step is the first that leaves something a garbage collector cannot remove (paths
/// in a user's Ingress, records in a DNS zone), or a vendor order to cancel on deletion: the
/// finalizer is added just before it, so an order that never does (DNS validation with no zone
/// to publish to) neither carries one nor pays a write for it.
async fn needs_finalizer_before(pass: &Pass<'_>, step: &Step) -> bool {
    let spec = &pass.order.spec;
    spec.cancel_on_delete
        || match step {
            Step::PublishChallenges { .. } => match spec.domain_validation.method {
                ValidationMethod::HTTP => true,
                ValidationMethod::DNS => dns_publish::any_zone(pass.ctx).await,
            },
            _ => false,
        }
}

fn error_policy(order: Arc<CachedOrder>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = order.uid().unwrap_or_default();
    ctx.metrics.reconcile_failed(error.category());
    let mut errors = 0;
    ctx.remember(uid, |m| {
        m.errors = m.errors.saturating_add(1);
        errors = m.errors;
    });
    let wait = Duration::from_millis(500).saturating_mul(1 << errors.min(7)).min(Duration::from_secs(60));
    warn!(order = %format!("{}/{}", order.namespace().unwrap_or_default(), order.name_any()), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn reconcile(cached: Arc<CachedOrder>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let order = cached.order()?;
    let ns = order.namespace().unwrap_or_default();
    let name = order.name_any();
    let phase = order.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let span = tracing::info_span!("reconcile", order = %format!("{ns}/{name}"), %phase);
    let result = reconcile_order(&order, &ctx).instrument(span).await;
    ctx.metrics.reconciled(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.remember(&order.uid().unwrap_or_default(), |m| m.errors = 0);
    }
    result
}

async fn reconcile_order(order: &CertificateOrder, ctx: &Context) -> Result<Action, Error> {
    if let Some(action) = caches_lag(ctx, order) {
        return Ok(action);
    }
    // The answers to the order's writes are read for their resourceVersion only (see answer).
    let orders: Api<Answer<CertificateOrder>> =
        Api::namespaced(ctx.client.clone(), &order.namespace().unwrap_or_default());
    if order.metadata.deletion_timestamp.is_some() {
        return finalize(order, ctx, &orders).await;
    }
    let uid = order.uid().unwrap_or_default();
    let mut pass = Pass::begin(ctx, order, &uid, orders).await?;
    let stopped = run_steps(&mut pass).await;
    if let Ok(provider) = &pass.provider {
        ctx.recheck_account(&order.spec.provider_ref.name, provider).await;
    }
    conclude(pass, stopped?).await
}

/// Whether the caches lag behind what this process wrote, and when to look again. Until the
/// Secret and provider caches have their first full list, a missing Secret or provider proves
/// nothing. The caches may still hold the order from before our last status write, or the TLS
/// Secret from before our last write of it: acting on either would redo work (install twice).
fn caches_lag(ctx: &Context, order: &CertificateOrder) -> Option<Action> {
    if !ctx.secrets_synced() || !ctx.providers_synced() {
        return Some(Action::requeue(Duration::from_millis(250)));
    }
    let memory = ctx.memory(&order.uid().unwrap_or_default());
    let version = order.resource_version().and_then(|v| v.parse::<u64>().ok());
    if let (Some(cached), Some(written)) = (version, memory.written_version)
        && cached < written
    {
        return Some(Action::requeue(Duration::from_millis(200)));
    }
    let (written, at) = memory.secret_written_version?;
    let cached = ctx
        .cached_secret(&order.namespace().unwrap_or_default(), &order.spec.secret_name)
        .and_then(|s| s.resource_version());
    // Missing long after the write means someone deleted it: then it is installed again.
    let lagging = match cached {
        Some(cached) => cached < written,
        None => at.elapsed() < SECRET_CACHE_LAG,
    };
    lagging.then(|| Action::requeue(Duration::from_millis(200)))
}

/// Adds the finalizer, conditional on the version the reconcile decides from (then status
/// writes are conditional on the one this write made).
async fn add_finalizer(pass: &mut Pass<'_>) -> Result<(), Error> {
    let order = pass.order;
    let finalizers: Vec<String> = order.finalizers().iter().cloned().chain([FINALIZER.to_string()]).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": pass.version}});
    let written = pass.orders.patch(&order.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    pass.finalizer = true;
    pass.version = written.resource_version();
    remember_written(pass.ctx, order, &written);
    Ok(())
}

/// The resourceVersion this process last wrote: until the cache holds it, the order is not
/// reconciled from the cache (see `caches_lag`).
fn remember_written(ctx: &Context, order: &CertificateOrder, written: &Answer<CertificateOrder>) {
    if let Some(v) = written.resource_version().and_then(|v| v.parse::<u64>().ok()) {
        ctx.remember(&order.uid().unwrap_or_default(), |m| m.written_version = Some(v));
    }
}

/// One reconcile of an order: what it decides from, and the status it has come to so far.
struct Pass<'a> {
    ctx: &'a Context,
    order: &'a CertificateOrder,
    orders: Api<Answer<CertificateOrder>>,
    view: OrderView<'a>,
    /// The spec's domains as ASCII.
    domains: Vec<String>,
    provider: Result<Arc<Provider>, String>,
    timing: lifecycle::Timing,
    observation: Observation,
    /// The status as read, and as the steps taken so far left it.
    original: CertificateOrderStatus,
    status: CertificateOrderStatus,
    /// Status writes are conditional on the resourceVersion this reconcile decides from (then on
    /// the one its last write made).
    version: Option<String>,
    /// The challenges as the server has them (read, or last written): what a deletion removes.
    recorded: Vec<Challenge>,
    /// Whether the order carries the finalizer.
    finalizer: bool,
}

/// Why the steps stopped, and what the events need to know.
#[derive(Default)]
struct Stopped {
    /// When to look again; `None`: when something changes.
    wait: Option<Duration>,
    /// The order may not do what its next step would (a shared cluster).
    refused: Option<String>,
    /// The challenges' self-check failed for the second time in a row in this reconcile: the
    /// failure is news (see `phase_news` and `CHECK_FAILURES_ANNOUNCED`).
    check_failure_news: bool,
}

impl<'a> Pass<'a> {
    /// Reads what the reconcile decides from: the order's status, its provider, and the observation.
    async fn begin(
        ctx: &'a Context,
        order: &'a CertificateOrder,
        uid: &'a str,
        orders: Api<Answer<CertificateOrder>>,
    ) -> Result<Pass<'a>, Error> {
        let renew_requested = order
            .annotations()
            .get(RENEW_ANNOTATION)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let generation = order.metadata.generation.unwrap_or_default();
        let view = OrderView { spec: &order.spec, generation, uid, renew_requested };
        let original = order.status.clone().unwrap_or_default();
        let domains = normalize_domains(&order.spec.domains).unwrap_or_default();
        let provider = ctx.provider(&order.spec.provider_ref.name).await;
        let provider_state = match &provider {
            Ok(p) => match p.missing_info(&order.spec, &original) {
                Some(message) => ProviderObs::MissingInfo(message),
                None => ProviderObs::Ready,
            },
            Err(message) => ProviderObs::Unusable(message.clone()),
        };
        let observation = observe::observe(ctx, order, &domains, &provider_state, ctx.config.clock.now()).await?;
        let timing = match &provider {
            Ok(p) => p.timing(&ctx.config.timing),
            Err(_) => ctx.config.timing.clone(),
        };
        Ok(Pass {
            ctx,
            order,
            orders,
            view,
            domains,
            provider,
            timing,
            observation,
            status: original.clone(),
            recorded: original.challenges.clone(),
            finalizer: order.finalizers().iter().any(|f| f == FINALIZER),
            original,
            version: order.resource_version(),
        })
    }
}

/// Takes the steps the lifecycle decides, one after the other, until it waits (or a step comes
/// back within the reconcile, the order is refused one, or it took [`MAX_STEPS`]).
async fn run_steps(pass: &mut Pass<'_>) -> Result<Stopped, Error> {
    // Out of steps: the next reconcile goes on at once (the watch event of this one's own status
    // write wakes none, see `Context::acted_on`).
    let mut stopped = Stopped { wait: Some(Duration::ZERO), ..Stopped::default() };
    let mut taken = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for _ in 0..MAX_STEPS {
        pass.observation.observed.now = pass.ctx.config.clock.now();
        let step = match decide(&pass.view, &pass.status, &pass.observation.observed, &pass.timing) {
            Decision::Act(step) => step,
            Decision::Wait(wait) => {
                stopped.wait = wait;
                break;
            }
        };
        // A step that comes back in the same reconcile waits for the next one.
        if !taken.insert(step.name()) {
            stopped.wait = Some(Duration::from_secs(1));
            break;
        }
        let Some(provider) = pass.provider.as_ref().ok().cloned() else {
            // Until the provider changes (its status says why).
            stopped.wait = None;
            break;
        };
        // A shared cluster: the order may not make the operator write, buy or publish what is not its own.
        if let Some(why) = tenancy::refusal(pass.ctx, pass.order, &step, &mut checked).await? {
            stopped.refused = Some(why);
            stopped.wait = Some(pass.timing.letter_poll);
            break;
        }
        observe::load_keys(pass.ctx, pass.order, &step, &mut pass.observation).await?;
        if !pass.finalizer && needs_finalizer_before(pass, &step).await {
            add_finalizer(pass).await?;
        }
        if records_unrecorded_values(pass, &step).await {
            persist(pass).await?;
        }
        let mut done = take_step(pass, &provider, &step).await;
        // The step's own look found what the check before it leaves to the step.
        if let Some(why) = done.refused.take() {
            stopped.refused = Some(why);
            stopped.wait = Some(pass.timing.letter_poll);
            break;
        }
        stopped.check_failure_news |= absorb_step(pass, &provider, &step, done).await?;
    }
    Ok(stopped)
}

/// Takes one step through the fence: every step writes or calls the vendor, and none starts, or
/// runs on, once the fence closes.
async fn take_step(pass: &Pass<'_>, provider: &Provider, step: &Step) -> Done {
    let (ctx, order, uid) = (pass.ctx, pass.order, pass.view.uid);
    let vendor = pass.status.order.clone().unwrap_or_default();
    let order_ctx = OrderContext {
        buy_again: lifecycle::buy_again_request(order.annotations().get(BUY_AGAIN_ANNOTATION), &vendor),
        ..order_context(order, &pass.domains, &vendor, pass.observation.observed.now)
    };
    let input = StepInput {
        ctx,
        order,
        provider,
        order_ctx,
        challenges: &pass.status.challenges,
        published: pass.status.published.as_ref(),
        observation: &pass.observation,
        memory: ctx.memory(uid),
    };
    let step_run = async {
        ctx.remember(uid, |memory| observe::before_step(step, memory));
        act::act(step, &input).await
    };
    match ctx.fence.run(step_run).await {
        Ok(done) => done,
        Err(fenced) => Outcome::Failed { step: step.name(), error: StepError::transient(fenced.to_string()) }.into(),
    }
}

/// Folds what a step did into status and records what it learnt (the one place the observation
/// and the process memory change after a step), with its metrics, logs and events; a step that
/// must be recorded before the next (a purchase) has status written at once. Returns whether the
/// challenges' self-check failed for the `CHECK_FAILURES_ANNOUNCED`th time in a row.
async fn absorb_step(pass: &mut Pass<'_>, provider: &Provider, step: &Step, done: Done) -> Result<bool, Error> {
    let (ctx, order, uid) = (pass.ctx, pass.order, pass.view.uid);
    let Done { outcome, learnt, .. } = done;
    let before: Vec<(String, Option<SelfCheck>)> =
        pass.status.challenges.iter().map(|c| (c.domain.clone(), c.self_check.clone())).collect();
    report_step(ctx, provider, step, &outcome);
    if let (Step::Reinstall, Outcome::Reinstalled(info)) = (step, &outcome) {
        repaired_event(ctx, order, info).await;
    }
    let status = std::mem::take(&mut pass.status);
    pass.status = absorb(&pass.view, status, outcome, &pass.timing, pass.observation.observed.now);
    let failures_before = pass.observation.observed.self_check_failures;
    match &learnt {
        observe::Learnt::KeyGenerated { key, .. } => ctx.keep_key(uid, key),
        observe::Learnt::PendingKeyDiscarded => ctx.forget_key(uid),
        _ => {}
    }
    ctx.remember(uid, |memory| pass.observation.record(learnt, memory));
    let failures = pass.observation.observed.self_check_failures;
    let failure_news = *step == Step::SelfCheck && failures == CHECK_FAILURES_ANNOUNCED;
    if *step == Step::SelfCheck && first_failure(&before, failures) {
        // Not news yet, and not written: the challenges stay unchecked in status until the next
        // check (the process remembers this one for the pace of checks).
        pass.status.challenges.iter_mut().for_each(|c| c.self_check = None);
    }
    if *step == Step::SelfCheck {
        self_check_events(ctx, order, &before, &pass.status, failures_before, failures).await;
    }
    if step.persist_before_next() && !provider.purchase_is_idempotent() {
        persist(pass).await?;
        if *step == Step::Purchase {
            // Recorded: a later purchase (buy-again, a new term) must not reuse it.
            ctx.remember(uid, |memory| memory.bought = None);
        }
    }
    Ok(failure_news)
}

/// Whether the step would put values into a DNS zone (RFC 2136) that the server's status does
/// not record yet: the challenges are written first, so a deletion (or a crash) after the update
/// still knows every value to remove. Records in `DNSEndpoint`s and HTTP objects are found by
/// name and need no such care; nor does an order no RFC 2136 zone serves (no write is spent).
async fn records_unrecorded_values(pass: &Pass<'_>, step: &Step) -> bool {
    matches!(step, Step::PublishChallenges { .. })
        && pass.order.spec.domain_validation.method == ValidationMethod::DNS
        && pass.status.challenges != pass.recorded
        && dns_publish::updates_a_zone(pass.ctx).await
}

/// Writes the status the steps came to so far, before the next step.
async fn persist(pass: &mut Pass<'_>) -> Result<(), Error> {
    let status = std::mem::take(&mut pass.status);
    pass.status = summarize(&pass.view, status, &pass.observation.observed);
    write_status(pass.ctx, &pass.orders, pass.order, &pass.status, &mut pass.version).await?;
    pass.recorded = pass.status.challenges.clone();
    Ok(())
}

/// A step's metrics and logs.
fn report_step(ctx: &Context, provider: &Provider, step: &Step, outcome: &Outcome) {
    let ok = !matches!(outcome, Outcome::Failed { .. });
    tracing::debug!(step = step.name(), ok, "step taken");
    ctx.metrics.step(step.name(), ok);
    if let Some(action) = step.provider_action() {
        ctx.metrics.provider_call(provider.kind(), action, ok);
    }
    if let Outcome::Failed { error, .. } = outcome {
        warn!(step = step.name(), error = %error.message, "step failed");
    }
}

/// Summarizes the status the steps came to, writes it when it changed, announces the change,
/// and says when to look again.
async fn conclude(mut pass: Pass<'_>, stopped: Stopped) -> Result<Action, Error> {
    if let Some(why) = stopped.refused {
        pass.observation.observed.provider = ProviderObs::NotPermitted(why);
    }
    let status = summarize(&pass.view, pass.status, &pass.observation.observed);
    let wait = stopped.wait;
    tracing::debug!(phase = %status.phase, ?wait, changed = status != pass.original, "reconciled");
    if status != pass.original {
        write_status(pass.ctx, &pass.orders, pass.order, &status, &mut pass.version).await?;
    }
    // A check that fails again as it did before leaves the status as it was, and is news then.
    if status != pass.original || stopped.check_failure_news {
        announce(pass.ctx, pass.order, &pass.original, &status, stopped.check_failure_news).await;
    }
    Ok(match wait {
        Some(w) => Action::requeue(pass.ctx.config.clock.real(w).max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

/// The order as the provider is told about it, `vendor` being its vendor order.
fn order_context<'a>(
    order: &'a CertificateOrder,
    domains: &'a [String],
    vendor: &'a VendorOrder,
    now: chrono::DateTime<Utc>,
) -> OrderContext<'a> {
    let meta = &order.metadata;
    OrderContext {
        namespace: meta.namespace.as_deref().unwrap_or_default(),
        name: meta.name.as_deref().unwrap_or_default(),
        uid: meta.uid.as_deref().unwrap_or_default(),
        generation: meta.generation.unwrap_or_default(),
        spec: &order.spec,
        domains,
        vendor,
        annotations: order.annotations(),
        approval: order.status.as_ref().and_then(|s| s.approval.as_ref()),
        now,
        may_have_bought: true,
        buy_again: None,
    }
}

/// The one status write of a reconcile: server-side apply under the `certorder` manager,
/// conditional on `version`, the resourceVersion the status was decided from (then the one this
/// write made). A status decided from an older view never replaces a newer one: the server
/// answers 409 and the order is reconciled again from what is there.
async fn write_status(
    ctx: &Context,
    orders: &Api<Answer<CertificateOrder>>,
    order: &CertificateOrder,
    status: &CertificateOrderStatus,
    version: &mut Option<String>,
) -> Result<(), Error> {
    // The reviewer's decision is not the operator's: never applied, so never owned or removed by
    // this manager, whatever the cache held.
    let without_approval;
    let status = match status.approval {
        None => status,
        Some(_) => {
            without_approval = CertificateOrderStatus { approval: None, ..status.clone() };
            &without_approval
        }
    };
    let patch = StatusApply {
        api_version: CertificateOrder::api_version(&()),
        kind: CertificateOrder::kind(&()),
        metadata: VersionOnly { resource_version: version.as_deref() },
        status,
    };
    let written =
        orders.patch_status(&order.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.metrics.status_written();
    *version = written.resource_version();
    remember_written(ctx, order, &written);
    Ok(())
}

/// The server-side apply of an order's status, conditional on `metadata.resourceVersion`.
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: std::borrow::Cow<'a, str>,
    kind: std::borrow::Cow<'a, str>,
    metadata: VersionOnly<'a>,
    status: &'a CertificateOrderStatus,
}

#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct VersionOnly<'a> {
    resource_version: Option<&'a str>,
}

/// Whether a challenge's self-check `now` is news (an event), `previous` being its last one and
/// `failures_before`, `failures` the failed checks in a row before and after this one. A failure
/// is news at the failure that reaches `CHECK_FAILURES_ANNOUNCED`, whatever it says, and after
/// that when what it says changes; a pass is news after a failure that was.
fn check_news(previous: Option<&SelfCheck>, now: &SelfCheck, failures_before: u32, failures: u32) -> bool {
    let unchanged = previous.is_some_and(|p| p.passed == now.passed && p.diagnosis == now.diagnosis);
    match now.passed {
        false => failures == CHECK_FAILURES_ANNOUNCED || (failures > CHECK_FAILURES_ANNOUNCED && !unchanged),
        true => failures_before >= CHECK_FAILURES_ANNOUNCED && previous.is_some_and(|p| !p.passed),
    }
}

/// Whether a self-check that failed (`failures` in a row, this one included) is the first check
/// of challenges none of which was checked before (`before`): a record made a moment ago may not
/// be visible yet, so the failure is neither news nor written to status.
fn first_failure(before: &[(String, Option<SelfCheck>)], failures: u32) -> bool {
    (1..CHECK_FAILURES_ANNOUNCED).contains(&failures) && before.iter().all(|(_, check)| check.is_none())
}

/// Whether the phase is news (an event): a new phase, except `DomainValidation` with challenges,
/// whose event (with what to create) waits until the self-checks fail
/// `CHECK_FAILURES_ANNOUNCED` times in a row, when a person may have to act (create the
/// records, fix them). Records that are visible at once, or by the next check, leave nobody
/// anything to do.
fn phase_news(before: &CertificateOrderStatus, after: &CertificateOrderStatus, check_failure_news: bool) -> bool {
    match after.phase {
        Phase::DomainValidation if !after.challenges.is_empty() => check_failure_news,
        _ => after.phase != before.phase,
    }
}

/// Self-checks in a row that must fail before the failure is news (a Warning event, and the
/// phase's event with what to publish): a record or file made a moment ago may not be visible
/// yet at the first check, and needs nobody.
const CHECK_FAILURES_ANNOUNCED: u32 = 2;

/// An event for every challenge whose self-check diagnosis changed once failures are news (see
/// `CHECK_FAILURES_ANNOUNCED`): a warning with what is wrong, or a note that it now passes after
/// a warning. `failures_before` and `failures` count the failed checks in a row before and after
/// this one.
async fn self_check_events(
    ctx: &Context,
    order: &CertificateOrder,
    before: &[(String, Option<SelfCheck>)],
    status: &CertificateOrderStatus,
    failures_before: u32,
    failures: u32,
) {
    for challenge in &status.challenges {
        let Some(now) = &challenge.self_check else { continue };
        let previous = before.iter().find(|(d, _)| *d == challenge.domain).and_then(|(_, c)| c.as_ref());
        if !check_news(previous, now, failures_before, failures) {
            continue;
        }
        let (type_, reason, note) = if now.passed {
            (
                EventType::Normal,
                "SelfCheckPassed",
                format!("{}: the CA will find {}", challenge.domain, challenge.target),
            )
        } else {
            (EventType::Warning, "SelfCheckFailed", format!("{}: {}", challenge.domain, now.diagnosis))
        };
        let event = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "SelfCheck".into(),
            secondary: None,
        };
        ctx.publish(&event, order).await;
    }
}

/// The events of a status change: the phase (see [`phase_news`]), conditions that
/// need a person, refusals.
async fn announce(
    ctx: &Context,
    order: &CertificateOrder,
    before: &CertificateOrderStatus,
    after: &CertificateOrderStatus,
    check_failure_news: bool,
) {
    if phase_news(before, after, check_failure_news) {
        phase_event(ctx, order, after).await;
    }
    delay_event(ctx, order, before, after).await;
    refusal_event(ctx, order, before, after).await;
}

/// A Warning event when a damaged TLS Secret was written again.
async fn repaired_event(ctx: &Context, order: &CertificateOrder, info: &CertificateInfo) {
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "SecretRepaired".into(),
        note: Some(format!(
            "Secret {:?} held a damaged tls.crt next to its good tls.key: wrote the certificate issued for that key again (serial {}); no new key, no reissue",
            order.spec.secret_name, info.serial
        )),
        action: "Reinstall".into(),
        secondary: None,
    };
    ctx.publish(&event, order).await;
}

async fn phase_event(ctx: &Context, order: &CertificateOrder, status: &CertificateOrderStatus) {
    let type_ = match status.phase {
        Phase::Failed | Phase::Rejected => EventType::Warning,
        _ => EventType::Normal,
    };
    let event = KubeEvent {
        type_,
        reason: status.phase.to_string(),
        note: status.message.clone().map(|m| m.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.publish(&event, order).await;
}

/// A Warning event when the order is refused something in a shared cluster, or refused anew.
async fn refusal_event(
    ctx: &Context,
    order: &CertificateOrder,
    before: &CertificateOrderStatus,
    after: &CertificateOrderStatus,
) {
    let refusal = |s: &CertificateOrderStatus| {
        s.condition(ConditionType::Stalled)
            .filter(|c| c.reason == lifecycle::summary::NOT_PERMITTED)
            .map(|c| c.message.clone())
    };
    let Some(message) = refusal(after) else { return };
    if refusal(before).as_ref() == Some(&message) {
        return;
    }
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: lifecycle::summary::NOT_PERMITTED.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.publish(&event, order).await;
}

/// A Warning event when a DV order becomes late (`IssuanceDelayed`), once.
async fn delay_event(
    ctx: &Context,
    order: &CertificateOrder,
    before: &CertificateOrderStatus,
    after: &CertificateOrderStatus,
) {
    // Conditions present only while something needs a person's attention: a Warning as each appears.
    for type_ in
        [ConditionType::IssuanceDelayed, ConditionType::PurchaseUnconfirmed, ConditionType::OrganizationRevalidationDue]
    {
        let present = |s: &CertificateOrderStatus| s.condition(type_).cloned();
        let (Some(condition), None) = (present(after), present(before)) else { continue };
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: condition.type_.clone(),
            note: Some(condition.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.publish(&event, order).await;
    }
}

/// Deletion: cancel the vendor order when asked (before issuance), then let go. Owned objects
/// (the pending key) go with the order; the TLS Secret stays.
async fn finalize(
    order: &CertificateOrder,
    ctx: &Context,
    orders: &Api<Answer<CertificateOrder>>,
) -> Result<Action, Error> {
    let uid = order.uid().unwrap_or_default();
    if !order.finalizers().iter().any(|f| f == FINALIZER) {
        ctx.forget(&uid);
        return Ok(Action::await_change());
    }
    let status = order.status.clone().unwrap_or_default();
    if (order.spec.domain_validation.method == ValidationMethod::HTTP
        || order.spec.domain_validation.method == ValidationMethod::DNS
        || status.published.is_some())
        && let Err(e) = publish::unpublish(ctx, order, status.published.as_ref()).await
    {
        warn!(error = %e.message, "cannot remove the validation files yet");
        return Ok(Action::requeue(lifecycle::backoff(&ctx.config.timing, 1)));
    }
    let issued = status.certificate.is_some();
    if order.spec.cancel_on_delete
        && !issued
        && let (Some(vendor), Ok(provider)) = (&status.order, ctx.provider(&order.spec.provider_ref.name).await)
        && vendor.id.is_some()
    {
        let domains = normalize_domains(&order.spec.domains).unwrap_or_default();
        let order_ctx = order_context(order, &domains, vendor, ctx.config.clock.now());
        let cancelled = ctx.fence.guard(provider.cancel(&order_ctx)).await;
        if let Err(e) = cancelled {
            if e.retryable {
                warn!(error = %e, "cannot cancel the vendor order yet");
                return Ok(Action::requeue(lifecycle::backoff(&ctx.config.timing, 1)));
            }
            warn!(error = %e, "the vendor refused to cancel the order; letting go of it");
        }
    }
    let remaining: Vec<String> = order.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": order.resource_version()}});
    match orders.patch(&order.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.forget(&uid);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(passed: bool, diagnosis: &str) -> SelfCheck {
        SelfCheck {
            passed,
            seen: String::new(),
            diagnosis: diagnosis.into(),
            server: None,
            status_code: None,
            redirect_target: None,
            content_length: None,
            last_check_time: "2026-11-26T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_self_check_is_news_once_it_has_failed_twice_in_a_row() {
        let (missing, wrong, pass) = (check(false, "no TXT record"), check(false, "wrong value"), check(true, ""));
        // (previous, now, failures before, failures after, news)
        let table: &[(Option<&SelfCheck>, &SelfCheck, u32, u32, bool)] = &[
            // The first check passes, or fails: a record made a moment ago may not be visible yet.
            (None, &pass, 0, 0, false),
            (None, &missing, 0, 1, false),
            // It passes at the next check: nobody was told, nobody needs to be.
            (Some(&missing), &pass, 1, 0, false),
            // It fails again: now it is news, even saying the same.
            (Some(&missing), &missing, 1, 2, true),
            (Some(&missing), &wrong, 1, 2, true),
            // Later failures are news when what they say changes.
            (Some(&missing), &missing, 2, 3, false),
            (Some(&missing), &wrong, 2, 3, true),
            (Some(&pass), &missing, 3, 4, true),
            // A pass after an announced failure is news.
            (Some(&missing), &pass, 2, 0, true),
            (Some(&wrong), &pass, 5, 0, true),
            // A pass after a pass is not.
            (Some(&pass), &pass, 3, 0, false),
            // One challenge that passed before while another keeps failing.
            (Some(&pass), &pass, 2, 3, false),
        ];
        for (i, (previous, now, before, after, news)) in table.iter().enumerate() {
            assert_eq!(check_news(*previous, now, *before, *after), *news, "row {i}");
        }
    }

    #[test]
    fn only_the_first_check_of_unchecked_challenges_that_fails_goes_unwritten() {
        let unchecked = vec![("a".to_string(), None), ("b".to_string(), None)];
        let checked = vec![("a".to_string(), Some(check(true, ""))), ("b".to_string(), None)];
        // (challenges before the check, failures in a row after it, unwritten)
        let table = [
            (&unchecked, 1, true),
            // It passed (no failures), or failed again: written.
            (&unchecked, 0, false),
            (&unchecked, 2, false),
            // A challenge was checked before: a failure now changes what status says, written.
            (&checked, 1, false),
        ];
        for (i, (before, failures, unwritten)) in table.into_iter().enumerate() {
            assert_eq!(first_failure(before, failures), unwritten, "row {i}");
        }
    }

    #[test]
    fn domain_validation_with_challenges_is_news_only_when_the_checks_fail_twice() {
        let challenge = Challenge {
            domain: "shop.example.com".into(),
            method: ValidationMethod::DNS,
            target: "_dnsauth.shop.example.com".into(),
            expected_value: "v".into(),
            record_type: None,
            self_check: Some(check(true, "")),
        };
        let status = |phase, challenges: &[Challenge]| CertificateOrderStatus {
            phase,
            challenges: challenges.to_vec(),
            ..CertificateOrderStatus::default()
        };
        let one = std::slice::from_ref(&challenge);
        // (before, after, the checks' failure is news, the phase is news)
        let table = [
            (status(Phase::InfoSubmitted, &[]), status(Phase::Purchased, &[]), false, true),
            (status(Phase::Issued, &[]), status(Phase::Issued, &[]), false, false),
            // The CA has not said what to publish yet: entering is news.
            (status(Phase::InfoSubmitted, &[]), status(Phase::DomainValidation, &[]), false, true),
            // With challenges, even checked (and passed) in the same reconcile, it waits.
            (status(Phase::InfoSubmitted, &[]), status(Phase::DomainValidation, one), false, false),
            (status(Phase::DomainValidation, one), status(Phase::DomainValidation, one), false, false),
            // Until the checks fail twice in a row.
            (status(Phase::DomainValidation, one), status(Phase::DomainValidation, one), true, true),
            (status(Phase::InfoSubmitted, &[]), status(Phase::DomainValidation, one), true, true),
            // Leaving it is news as ever.
            (status(Phase::DomainValidation, one), status(Phase::Issued, one), false, true),
        ];
        for (i, (before, after, failure_news, news)) in table.iter().enumerate() {
            assert_eq!(phase_news(before, after, *failure_news), *news, "row {i}");
        }
    }
}
