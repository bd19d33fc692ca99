//! Prometheus metrics (prometheus-client) and the health endpoints, served by axum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use chrono::{DateTime, Utc};

use super::cache::{CachedOrder, OrderFacts};
use crate::api::Phase;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    pub provider: String,
    pub action: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

const PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::Purchased,
    Phase::InfoSubmitted,
    Phase::DocumentsUploaded,
    Phase::OrganizationReview,
    Phase::DomainValidation,
    Phase::Issued,
    Phase::Rejected,
    Phase::Failed,
];

/// Gauges read from the order caches at scrape time: orders by phase, and each certificate's
/// validity and renewal times. Nothing to keep in step, no series left behind by deleted orders.
#[derive(Debug, Default)]
struct OrderCollector {
    stores: std::sync::Mutex<Vec<Store<CachedOrder>>>,
}

impl Collector for OrderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let orders: Vec<Arc<CachedOrder>> =
            self.stores.lock().expect("collector lock").iter().flat_map(|s| s.state()).collect();
        let mut by_phase = [0i64; PHASES.len()];
        for order in &orders {
            if let Some(i) = PHASES.iter().position(|p| *p == order.facts.phase) {
                by_phase[i] += 1;
            }
        }
        let mut family =
            encoder.encode_descriptor("orders", "Orders by phase", None, ConstGauge::new(0i64).metric_type())?;
        for (phase, count) in PHASES.iter().zip(by_phase) {
            ConstGauge::new(count).encode(family.encode_family(&PhaseLabels { phase: phase.as_str() })?)?;
        }
        let unconfirmed = orders.iter().filter(|o| o.facts.purchase_unconfirmed).count() as i64;
        ConstGauge::new(unconfirmed).encode(encoder.encode_descriptor(
            "purchases_unconfirmed",
            "Orders whose purchase may have been made but is not found yet: a person may have to decide (alert on > 0 for long)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?)?;
        type Field = fn(&OrderFacts) -> Option<DateTime<Utc>>;
        let timestamps: [(&str, &str, Field); 3] = [
            (
                "certificate_expiration_timestamp_seconds",
                "When the order's certificate expires (notAfter), Unix seconds",
                |o| o.not_after,
            ),
            (
                "certificate_not_before_timestamp_seconds",
                "When the order's certificate became valid (notBefore), Unix seconds",
                |o| o.not_before,
            ),
            (
                "certificate_renewal_timestamp_seconds",
                "When the order's certificate will be renewed, Unix seconds",
                |o| o.renewal_time,
            ),
        ];
        for (name, help, field) in timestamps {
            let mut family = encoder.encode_descriptor(name, help, None, ConstGauge::new(0f64).metric_type())?;
            for order in &orders {
                if let Some(value) = field(&order.facts).map(|t| t.timestamp() as f64) {
                    let labels = [
                        ("namespace", order.metadata.namespace.as_deref().unwrap_or_default()),
                        ("name", order.metadata.name.as_deref().unwrap_or_default()),
                    ];
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconcile_failures: Family<CategoryLabels, Counter>,
    steps: Family<StepLabels, Counter>,
    self_checks: Family<ResultLabels, Counter>,
    provider_calls: Family<ProviderCallLabels, Counter>,
    status_writes: Counter,
    orders: Arc<OrderCollector>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("certorder");
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile of an order",
            reconcile_duration.clone(),
        );
        let reconcile_failures = Family::<CategoryLabels, Counter>::default();
        registry.register("reconcile_failures", "Reconciles that failed, by category", reconcile_failures.clone());
        let steps = Family::<StepLabels, Counter>::default();
        registry.register("steps", "Lifecycle steps taken, by step and result", steps.clone());
        let self_checks = Family::<ResultLabels, Counter>::default();
        registry.register("self_checks", "Domain-validation self-checks of an order, by result", self_checks.clone());
        let provider_calls = Family::<ProviderCallLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Calls to certificate providers, by provider kind, action and result",
            provider_calls.clone(),
        );
        let status_writes = Counter::default();
        registry.register("status_writes", "Status writes of orders", status_writes.clone());
        let orders = Arc::new(OrderCollector::default());
        registry.register_collector(Box::new(orders.clone()));
        Metrics {
            registry,
            reconcile_duration,
            reconcile_failures,
            steps,
            self_checks,
            provider_calls,
            status_writes,
            orders,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_failures.get_or_create(&CategoryLabels { category: category.into() }).inc();
    }

    pub fn step(&self, step: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.steps.get_or_create(&StepLabels { step: step.into(), result: result.into() }).inc();
    }

    pub fn self_checks(&self, passed: bool) {
        let result = if passed { "passed" } else { "failed" };
        self.self_checks.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    pub fn provider_call(&self, provider: &str, action: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.provider_calls
            .get_or_create(&ProviderCallLabels {
                provider: provider.into(),
                action: action.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Orders in this cache are counted by phase and their certificates' times exported.
    pub fn watch_orders(&self, store: Store<CachedOrder>) {
        self.orders.stores.lock().expect("collector lock").push(store);
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// The caches are synced and reconciles run.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The OpenMetrics text of every metric, written into `out` as it is made.
    pub fn encode_to(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode(out, &self.registry)
    }

    /// The scrape's answer as a stream of pieces of about [`SCRAPE_PIECE`] bytes. The text has
    /// several series per order, megabytes at 10,000 orders: made whole, it would raise the
    /// process's peak memory by that much at every scrape. It is made on a blocking thread that
    /// waits while the client reads, and stops if the client goes away.
    fn scrape(self: Arc<Self>) -> axum::body::Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(1);
        tokio::task::spawn_blocking(move || {
            let mut out = Pieces { piece: String::with_capacity(SCRAPE_PIECE), tx };
            // An error means the client went away: nothing to tell.
            let _ = self.encode_to(&mut out).and_then(|()| out.send());
        });
        let pieces = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|piece| (Ok::<_, std::convert::Infallible>(piece), rx))
        });
        axum::body::Body::from_stream(pieces)
    }
}

/// About how many bytes of a scrape's answer are made before they are sent.
const SCRAPE_PIECE: usize = 32 * 1024;

/// Text written here goes to the scrape's client in pieces of about [`SCRAPE_PIECE`] bytes.
struct Pieces {
    piece: String,
    tx: tokio::sync::mpsc::Sender<String>,
}

impl Pieces {
    fn send(&mut self) -> std::fmt::Result {
        let piece = std::mem::replace(&mut self.piece, String::with_capacity(SCRAPE_PIECE));
        self.tx.blocking_send(piece).map_err(|_| std::fmt::Error)
    }
}

impl std::fmt::Write for Pieces {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.piece.push_str(s);
        if self.piece.len() >= SCRAPE_PIECE { self.send() } else { Ok(()) }
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (caches synced).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    m.scrape(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet").into_response()
                }
            }),
        )
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn a_scrape_is_sent_in_bounded_pieces_that_add_up_to_the_text() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
        let line = "certorder_certificate_expiration_timestamp_seconds{namespace=\"shop\",name=\"site\"} 1.8e9\n";
        let writer = std::thread::spawn(move || {
            let mut out = Pieces { piece: String::new(), tx };
            for _ in 0..2_000 {
                out.write_str(line)?;
            }
            out.send()
        });
        let mut pieces = Vec::new();
        while let Some(piece) = rx.blocking_recv() {
            pieces.push(piece);
        }
        writer.join().unwrap().expect("the reader took every piece");
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() < SCRAPE_PIECE + line.len()));
        assert_eq!(pieces.concat(), line.repeat(2_000));
    }

    #[test]
    fn a_scrape_stops_when_its_client_goes_away() {
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(1);
        drop(rx);
        let mut out = Pieces { piece: String::new(), tx };
        let written = (0..SCRAPE_PIECE).try_for_each(|_| out.write_str("x"));
        assert_eq!(written, Err(std::fmt::Error));
    }

    #[test]
    fn the_metrics_text_ends_with_eof() {
        let metrics = Metrics::default();
        metrics.step("Purchase", true);
        let mut text = String::new();
        metrics.encode_to(&mut text).unwrap();
        assert!(text.contains("certorder_steps_total{step=\"Purchase\",result=\"ok\"} 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
