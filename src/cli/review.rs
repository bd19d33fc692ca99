//! `certorder approve` and `reject`: a person's decision on an OV/EV order that a local provider
//! with manual review holds for review.

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, Patch};
use serde_json::{Value, json};

use super::{ToolError, get_order, patch_params};
use crate::api::{CertificateOrder, ClusterCertificateProvider, ReviewMode};

/// The decision `approve` or `reject` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    Approve,
    Reject { reason: String },
}

impl Review {
    fn action(&self) -> &'static str {
        match self {
            Review::Approve => "approve",
            Review::Reject { .. } => "reject",
        }
    }
}

/// Checks that a person can review `order` under `provider` (a local provider with manual review,
/// an OV or EV order); returns the generation the decision applies to.
pub fn check_reviewable(
    order: &CertificateOrder,
    provider: Option<&ClusterCertificateProvider>,
    review: &Review,
) -> Result<i64, ToolError> {
    let namespace = order.metadata.namespace.clone().unwrap_or_default();
    let name = order.metadata.name.clone().unwrap_or_default();
    let action = review.action();
    if let Review::Reject { reason } = review
        && reason.trim().is_empty()
    {
        return Err(ToolError::EmptyReason);
    }
    let provider_name = order.spec.provider_ref.name.clone();
    let Some(provider) = provider else {
        return Err(ToolError::ProviderNotFound { namespace, order: name, provider: provider_name });
    };
    let Some(local) = &provider.spec.local else {
        return Err(ToolError::NotLocal { provider: provider_name, action });
    };
    if local.review == ReviewMode::Automatic {
        return Err(ToolError::AutomaticReview { provider: provider_name, action });
    }
    if !order.spec.product.type_.needs_organization_review() {
        return Err(ToolError::NotReviewed { namespace, name, action });
    }
    order.metadata.generation.ok_or(ToolError::NoGeneration { namespace, name })
}

/// The merge patch of the status subresource that records a review decision for `generation`
/// (`status.approval`, which the operator's own status writes keep: it never applies that field).
/// Approving removes the reason of an earlier rejection.
pub fn review_patch(review: &Review, generation: i64, now: DateTime<Utc>) -> Value {
    let (decision, reason) = match review {
        Review::Approve => ("Approved", Value::Null),
        Review::Reject { reason } => ("Rejected", Value::String(reason.trim().to_string())),
    };
    json!({ "status": { "approval": {
        "decision": decision,
        "generation": generation,
        "reason": reason,
        "decisionTime": now.to_rfc3339_opts(SecondsFormat::Secs, true),
    }}})
}

/// `certorder approve` / `reject`: records the decision for the order's current generation.
/// Returns a line for the person.
pub async fn review(client: kube::Client, namespace: &str, name: &str, review: Review) -> Result<String, ToolError> {
    let orders: Api<CertificateOrder> = Api::namespaced(client.clone(), namespace);
    let order = get_order(&orders, namespace, name).await?;
    let providers: Api<ClusterCertificateProvider> = Api::all(client);
    let provider = providers.get_opt(&order.spec.provider_ref.name).await?;
    let generation = check_reviewable(&order, provider.as_ref(), &review)?;
    // The status subresource: RBAC `certificateorders/status`, which the chart's certorder-edit
    // role (order authors) lacks and certorder-approver grants.
    orders.patch_status(name, &patch_params(), &Patch::Merge(review_patch(&review, generation, Utc::now()))).await?;
    Ok(match review {
        Review::Approve => format!(
            "certificateorder {namespace}/{name} approved (generation {generation}); the local CA goes on to domain validation"
        ),
        Review::Reject { reason } => format!(
            "certificateorder {namespace}/{name} rejected (generation {generation}): {}; it resubmits when its spec changes",
            reason.trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterCertificateProviderSpec;
    use crate::cli::tests::{local, order, reject};

    #[test]
    fn a_manual_local_provider_lets_people_review_ov_and_ev_at_the_current_generation() {
        let provider = local(ReviewMode::Manual);
        assert_eq!(check_reviewable(&order("OV", Some(3)), Some(&provider), &Review::Approve).unwrap(), 3);
        assert_eq!(check_reviewable(&order("EV", Some(1)), Some(&provider), &reject("no")).unwrap(), 1);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let manual = local(ReviewMode::Manual);
        let automatic = local(ReviewMode::Automatic);
        let vendor = ClusterCertificateProvider::new("local", ClusterCertificateProviderSpec::default());
        let cases: Vec<(CertificateOrder, Option<&ClusterCertificateProvider>, Review, &str)> = vec![
            (
                order("OV", Some(1)),
                None,
                Review::Approve,
                "refers to ClusterCertificateProvider local, which does not exist; create it or fix spec.providerRef.name",
            ),
            (
                order("OV", Some(1)),
                Some(&automatic),
                Review::Approve,
                "reviews orders automatically (spec.local.review: Automatic); set it to Manual to approve orders by hand",
            ),
            (
                order("OV", Some(1)),
                Some(&vendor),
                reject("x"),
                "is not a local provider: its vendor's CA reviews the order, so there is nothing to reject here",
            ),
            (
                order("DV", Some(1)),
                Some(&manual),
                Review::Approve,
                "web/shop is a DV order: DV certificates have no organization review, so there is nothing to approve",
            ),
            (order("OV", Some(1)), Some(&manual), reject("  "), "--reason must say why the order is rejected"),
            (order("OV", None), Some(&manual), Review::Approve, "has no metadata.generation"),
        ];
        for (order, provider, review, want) in cases {
            let err = check_reviewable(&order, provider, &review).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn approving_records_the_generation_and_clears_an_old_reason() {
        let now = DateTime::parse_from_rfc3339("2026-03-15T08:09:10Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            review_patch(&Review::Approve, 4, now),
            json!({"status": {"approval": {
                "decision": "Approved", "generation": 4, "reason": null, "decisionTime": "2026-03-15T08:09:10Z",
            }}})
        );
    }

    #[test]
    fn rejecting_records_the_trimmed_reason() {
        let now = DateTime::parse_from_rfc3339("2026-03-15T08:09:10Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            review_patch(&reject(" licence expired \n"), 2, now)["status"]["approval"],
            json!({"decision": "Rejected", "generation": 2, "reason": "licence expired", "decisionTime": "2026-03-15T08:09:10Z"})
        );
    }
}
