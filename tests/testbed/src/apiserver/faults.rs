//! Fault injection (programmed error answers, added latency, dropped watches) and request counters.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::ApiError;

/// The answer a fault rule gives instead of handling the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAnswer {
    /// 500 InternalError.
    InternalError,
    /// 429 TooManyRequests with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 409 Conflict.
    Conflict,
    /// Any status code with an InternalError-like Status body.
    Status(u16),
}

/// Which requests a rule applies to; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultMatch {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: Option<String>,
    /// Plural resource (`configmaps`), or `plural/subresource` (`certificates/status`).
    pub resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

impl FaultMatch {
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.into());
        self
    }
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.into());
        self
    }
}

#[derive(Debug, Clone)]
struct Rule {
    when: FaultMatch,
    answer: FaultAnswer,
    remaining: usize,
}

/// What a request is, for matching faults and counting.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Fault injection and counters, shared by the server and its handle.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    latency_ms: AtomicU64,
    counters: Mutex<BTreeMap<(String, String), u64>>,
    watch_generation: tokio::sync::watch::Sender<u64>,
    /// Bearer tokens of clients cut off by a network partition (see [`Faults::cut_off`]).
    cut_off: Mutex<std::collections::HashSet<String>>,
}

impl Faults {
    /// Answers the next `times` requests matching `when` with `answer`.
    pub fn inject(&self, when: FaultMatch, answer: FaultAnswer, times: usize) {
        self.rules.lock().unwrap().push(Rule { when, answer, remaining: times });
    }

    /// Removes every programmed answer and the added latency.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
        self.latency_ms.store(0, Ordering::Relaxed);
    }

    /// Delays every request by `latency` before handling it.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// A network partition between the server and the client with `token` (see
    /// [`super::ApiServer::client_kubeconfig`]): its requests are never answered nor carried out,
    /// and its open watches fall silent, until [`Faults::reconnect`]; then what hung fails with 503
    /// and the silent watches end.
    pub fn cut_off(&self, token: &str) {
        self.cut_off.lock().unwrap().insert(token.to_string());
    }

    pub fn reconnect(&self, token: &str) {
        self.cut_off.lock().unwrap().remove(token);
    }

    pub fn is_cut_off(&self, token: &str) -> bool {
        self.cut_off.lock().unwrap().contains(token)
    }

    /// Waits while the client with `token` is cut off.
    pub async fn while_cut_off(&self, token: &str) {
        while self.is_cut_off(token) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends every open watch stream (clients see the connection end and must re-watch).
    pub fn drop_watches(&self) {
        self.watch_generation.send_modify(|g| *g += 1);
    }

    pub fn watch_drops(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch_generation.subscribe()
    }

    /// Requests counted so far for `verb` on `resource` (plural, or `plural/subresource`).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.counters.lock().unwrap().get(&(verb.to_string(), resource.to_string())).copied().unwrap_or(0)
    }

    /// All counters: `(verb, resource) -> requests`.
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.counters.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.counters.lock().unwrap().clear();
    }

    /// Counts the request and returns the programmed answer for it, if any.
    pub(crate) fn on_request(&self, req: &RequestInfo) -> Option<ApiError> {
        *self.counters.lock().unwrap().entry((req.verb.clone(), req.resource.clone())).or_default() += 1;
        let mut rules = self.rules.lock().unwrap();
        let m = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        let idx = rules.iter().position(|r| {
            r.remaining > 0
                && m(&r.when.verb, Some(&req.verb))
                && m(&r.when.resource, Some(&req.resource))
                && m(&r.when.name, req.name.as_deref())
                && m(&r.when.namespace, req.namespace.as_deref())
        })?;
        let rule = &mut rules[idx];
        rule.remaining -= 1;
        let answer = rule.answer.clone();
        if rule.remaining == 0 {
            rules.remove(idx);
        }
        Some(match answer {
            FaultAnswer::InternalError => ApiError::internal("injected fault"),
            FaultAnswer::TooManyRequests { retry_after_secs } => ApiError::too_many_requests(retry_after_secs),
            FaultAnswer::Conflict => ApiError::new(409, "Conflict", "injected conflict"),
            FaultAnswer::Status(code) => ApiError::new(code, "InternalError", format!("injected status {code}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_n_times_and_count() {
        let f = Faults::default();
        f.inject(FaultMatch::default().verb("get").resource("configmaps").name("a"), FaultAnswer::Conflict, 2);
        let req = |name: &str| RequestInfo {
            verb: "get".into(),
            resource: "configmaps".into(),
            namespace: Some("default".into()),
            name: Some(name.into()),
        };
        assert!(f.on_request(&req("b")).is_none());
        assert_eq!(f.on_request(&req("a")).unwrap().code, 409);
        assert_eq!(f.on_request(&req("a")).unwrap().code, 409);
        assert!(f.on_request(&req("a")).is_none());
        assert_eq!(f.count("get", "configmaps"), 4);
    }
}
