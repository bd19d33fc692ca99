//! Fencing of a leader cut off from the API server. With `--leader-elect`, another replica may take
//! the Lease `leaseDuration` after its last renewal. A leader that cannot renew must therefore stop
//! every write and every vendor call *before* that moment, on its own clock, without waiting for the
//! lease library to notice: it knows when it last *sent* a renewal that succeeded, and stops a margin
//! before that renewal runs out.
//!
//! The fence sits in the Kubernetes client itself (a wrapping `tower` service), so no write can
//! slip past it: a successful write of the Lease moves the deadline on; any other write after the
//! deadline is refused without being sent, and a write in flight at the deadline is cut off. Vendor
//! calls check [`Fence::remaining`] before they start and are cut off at the deadline the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use tokio::time::Instant;

/// The fence of this process: open without leader election, else open until the deadline set by
/// the last successful Lease write.
#[derive(Debug)]
pub struct Fence {
    /// `None`: no leader election, never closes.
    lease: Option<LeaseTerms>,
    deadline: Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct LeaseTerms {
    /// The Lease's collection path (`/apis/coordination.k8s.io/v1/namespaces/<ns>/leases`) and the
    /// Lease's own path under it.
    collection: String,
    object: String,
    /// How long after a renewal was sent this replica may still act.
    valid_for: Duration,
}

/// Why a write or vendor call was not made.
#[derive(Debug, thiserror::Error)]
#[error(
    "not sent: this replica could not renew the leader Lease in time and stopped acting, so that another replica can take over safely"
)]
pub struct Fenced;

impl Fence {
    /// No leader election: every call may be made.
    pub fn open() -> Arc<Fence> {
        Arc::new(Fence { lease: None, deadline: Mutex::new(None) })
    }

    /// Leader election with the Lease `name` in `namespace`: closed until a write of that Lease
    /// succeeds; then open until `lease_duration - margin` after that write was sent.
    pub fn for_lease(namespace: &str, name: &str, lease_duration: Duration, margin: Duration) -> Arc<Fence> {
        let collection = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases");
        Arc::new(Fence {
            lease: Some(LeaseTerms {
                object: format!("{collection}/{name}"),
                collection,
                valid_for: lease_duration.saturating_sub(margin),
            }),
            deadline: Mutex::new(None),
        })
    }

    /// How long calls may still be made: `None` without leader election, `Some(ZERO)` when closed.
    pub fn remaining(&self) -> Option<Duration> {
        self.lease.as_ref()?;
        let deadline = *self.deadline.lock().expect("fence lock");
        Some(deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now())))
    }

    pub fn check(&self) -> Result<(), Fenced> {
        if self.remaining() == Some(Duration::ZERO) { Err(Fenced) } else { Ok(()) }
    }

    /// Runs `call` if the fence is open, cutting it off at the deadline.
    pub async fn run<T>(&self, call: impl Future<Output = T>) -> Result<T, Fenced> {
        match self.remaining() {
            None => Ok(call.await),
            Some(Duration::ZERO) => Err(Fenced),
            Some(left) => tokio::time::timeout(left, call).await.map_err(|_| Fenced),
        }
    }

    /// [`Fence::run`] for a call that can fail: a closed fence is one more of its errors.
    pub async fn guard<T, E: From<Fenced>>(&self, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.run(call).await.unwrap_or_else(|fenced| Err(fenced.into()))
    }

    /// Resolves once the fence closes after having been open (never without leader election).
    pub async fn closed(&self) {
        if self.lease.is_none() {
            return std::future::pending().await;
        }
        loop {
            match self.remaining() {
                Some(Duration::ZERO) => return,
                Some(left) => tokio::time::sleep(left.min(Duration::from_millis(500))).await,
                None => unreachable!("checked above"),
            }
        }
    }

    fn renewed(&self, sent: Instant) {
        let Some(lease) = &self.lease else { return };
        let until = sent + lease.valid_for;
        let mut deadline = self.deadline.lock().expect("fence lock");
        if deadline.is_none_or(|d| d < until) {
            *deadline = Some(until);
        }
    }

    fn is_lease_write(&self, request: &Request<Body>) -> bool {
        let Some(lease) = &self.lease else { return false };
        let path = request.uri().path();
        mutating(request.method()) && (path == lease.collection || path == lease.object)
    }

    /// A client whose every request goes through the fence (see the module docs).
    pub fn wrap(self: &Arc<Self>, client: kube::Client) -> kube::Client {
        if self.lease.is_none() {
            return client;
        }
        let namespace = client.default_namespace().to_string();
        kube::Client::new(FencedService { inner: client, fence: self.clone() }, namespace)
    }
}

fn mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(Clone)]
struct FencedService {
    inner: kube::Client,
    fence: Arc<Fence>,
}

impl tower_service::Service<Request<Body>> for FencedService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (client, fence) = (self.inner.clone(), self.fence.clone());
        Box::pin(async move {
            if fence.is_lease_write(&request) {
                let sent = Instant::now();
                let response = client.send(request).await?;
                if response.status().is_success() {
                    fence.renewed(sent);
                }
                return Ok(response);
            }
            if !mutating(request.method()) {
                return client.send(request).await;
            }
            fence.guard(client.send(request)).await
        })
    }
}

impl From<Fenced> for crate::provider::ProviderError {
    fn from(fenced: Fenced) -> crate::provider::ProviderError {
        // A cancel cut off at the deadline may have reached the vendor: retried by the next leader.
        crate::provider::ProviderError { retryable: true, outcome_unknown: true, message: fenced.to_string() }
    }
}

impl From<Fenced> for kube::Error {
    fn from(fenced: Fenced) -> kube::Error {
        kube::Error::Service(Box::new(fenced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_fence_closes_a_margin_before_the_last_renewal_runs_out() {
        let open = Fence::open();
        assert_eq!(open.remaining(), None);
        assert!(open.check().is_ok());

        let fence = Fence::for_lease("certorder-system", "certorder", Duration::from_secs(15), Duration::from_secs(3));
        assert_eq!(fence.remaining(), Some(Duration::ZERO), "closed until the Lease is first written");
        assert!(fence.check().is_err());
        let sent = Instant::now();
        fence.renewed(sent);
        assert_eq!(fence.remaining(), Some(Duration::from_secs(12)));
        tokio::time::advance(Duration::from_secs(10)).await;
        // A renewal answered late but sent earlier never moves the deadline back.
        fence.renewed(sent);
        assert_eq!(fence.remaining(), Some(Duration::from_secs(2)));
        let slow = fence.guard(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, kube::Error>(())
        });
        assert!(matches!(slow.await, Err(kube::Error::Service(_))), "a call in flight is cut off at the deadline");
        assert!(fence.check().is_err());
        tokio::time::timeout(Duration::from_millis(1), fence.closed()).await.expect("closed resolves");
    }
}
