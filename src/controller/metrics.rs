//! Prometheus metrics (prometheus-client) and the health endpoints, served by axum.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconcile_failures: Family<CategoryLabels, Counter>,
    steps: Family<StepLabels, Counter>,
    self_checks: Family<ResultLabels, Counter>,
    status_writes: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("certorder");
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Time of one reconcile of an order", reconcile_duration.clone());
        let reconcile_failures = Family::<CategoryLabels, Counter>::default();
        registry.register("reconcile_failures", "Reconciles that failed, by category", reconcile_failures.clone());
        let steps = Family::<StepLabels, Counter>::default();
        registry.register("steps", "Lifecycle steps taken, by step and result", steps.clone());
        let self_checks = Family::<ResultLabels, Counter>::default();
        registry.register("self_checks", "Domain-validation self-checks of an order, by result", self_checks.clone());
        let status_writes = Counter::default();
        registry.register("status_writes", "Status writes of orders", status_writes.clone());
        Metrics {
            registry,
            reconcile_duration,
            reconcile_failures,
            steps,
            self_checks,
            status_writes,
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

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// The caches are synced and reconciles run.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (caches synced).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
        }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|State(m): State<Arc<Metrics>>| async move {
            if m.ready.load(Ordering::Relaxed) {
                (StatusCode::OK, "ready").into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet").into_response()
            }
        }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
