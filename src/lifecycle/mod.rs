//! The phase machine: a pure function from (spec, status, observations, now) to the next step.

use std::time::Duration;

/// How often the operator looks again, by step; configurable with `certorder run` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// First re-check of a failing domain self-check; doubles up to `self_check_max`.
    pub self_check_initial: Duration,
    pub self_check_max: Duration,
    /// Polling of the vendor while the CA reviews the organization (days).
    pub review_poll: Duration,
    /// Polling of the vendor while it validates domains.
    pub validation_poll: Duration,
    /// Looking for the confirmation letter Secret while it is missing.
    pub letter_poll: Duration,
    /// First retry after a transient failure; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            self_check_initial: Duration::from_secs(2),
            self_check_max: Duration::from_secs(120),
            review_poll: Duration::from_secs(600),
            validation_poll: Duration::from_secs(60),
            letter_poll: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}
