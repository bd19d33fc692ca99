//! `certorder renew` and `buy-again`: a person asks the controller to renew now, or to buy once
//! more when a purchase's outcome is unknown and the vendor's console shows no such order.

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, Patch};
use serde_json::{Value, json};

use super::{ToolError, get_order, patch_params};
use crate::api::{BUY_AGAIN_ANNOTATION, CertificateOrder, RENEW_ANNOTATION};

/// The merge patch that asks for a renewal at `now`.
pub fn renew_patch(now: DateTime<Utc>) -> Value {
    json!({ "metadata": { "annotations": {
        RENEW_ANNOTATION: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    }}})
}

/// `certorder renew`: asks the controller to renew the order's certificate once, now.
pub async fn renew(client: kube::Client, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<String, ToolError> {
    let orders: Api<CertificateOrder> = Api::namespaced(client, namespace);
    get_order(&orders, namespace, name).await?;
    orders.patch(name, &patch_params(), &Patch::Merge(renew_patch(now))).await?;
    Ok(format!(
        "certificateorder {namespace}/{name}: renewal requested at {}",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    ))
}

/// `certorder buy-again`: a person's decision that the order's unconfirmed purchase was not made
/// (the vendor's console shows no such order), so the order may buy once more.
pub async fn buy_again(
    client: kube::Client,
    namespace: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, ToolError> {
    let orders: Api<CertificateOrder> = Api::namespaced(client, namespace);
    let order = get_order(&orders, namespace, name).await?;
    let vendor = order.status.as_ref().and_then(|s| s.order.as_ref());
    if !vendor.is_some_and(|v| v.id.is_none() && v.purchase_unconfirmed_time.is_some()) {
        return Err(ToolError::NotUnconfirmed { namespace: namespace.into(), name: name.into() });
    }
    let at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let patch = json!({ "metadata": { "annotations": { BUY_AGAIN_ANNOTATION: at } } });
    orders.patch(name, &patch_params(), &Patch::Merge(patch)).await?;
    Ok(format!(
        "certificateorder {namespace}/{name}: buying again requested at {at}; the earlier purchase, if the vendor made it after all, is not used"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewing_records_the_time_in_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2026-03-15T08:09:10.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            renew_patch(now),
            json!({"metadata": {"annotations": {"certorder.io/renew-requested": "2026-03-15T08:09:10Z"}}})
        );
    }
}
