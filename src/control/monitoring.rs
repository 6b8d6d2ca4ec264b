//! A distribution's monitoring subscription (CloudFront's additional
//! real-time metrics): accepted, stored and answered as CloudFront does.
//! keyfront exports its own metrics whatever it says.

use super::api::{ApiError, ApiReply, ApiRequest};
use super::distributions::no_such_distribution;
use super::store::State;
use super::xml::Element;

fn no_subscription() -> ApiError {
    ApiError::new(
        404,
        "NoSuchMonitoringSubscription",
        "A monitoring subscription does not exist for the specified distribution.",
    )
}

/// Refuses a subscription whose status is not `Enabled` or `Disabled`.
fn check(subscription: &Element) -> Result<(), ApiError> {
    let status = subscription
        .at(&["RealtimeMetricsSubscriptionConfig", "RealtimeMetricsSubscriptionStatus"])
        .map(|status| status.text.as_str());
    match status {
        Some("Enabled" | "Disabled") => Ok(()),
        other => Err(ApiError::invalid(format!(
            "RealtimeMetricsSubscriptionStatus {other:?} is not Enabled or Disabled"
        ))),
    }
}

/// `GET /distributions/{id}/monitoring-subscription`.
pub fn get(id: &str, state: &State) -> Result<ApiReply, ApiError> {
    if !state.distributions.contains_key(id) {
        return Err(no_such_distribution());
    }
    state
        .monitoring_subscriptions
        .get(id)
        .map(|subscription| ApiReply::ok(subscription.clone()))
        .ok_or_else(no_subscription)
}

/// `POST` (create) or `DELETE /distributions/{id}/monitoring-subscription`.
pub fn change(id: &str, request: &ApiRequest<'_>, state: &mut State) -> Result<ApiReply, ApiError> {
    if !state.distributions.contains_key(id) {
        return Err(no_such_distribution());
    }
    match request.method {
        "POST" => {
            let subscription = Element::parse(request.body, "MonitoringSubscription")?;
            super::api::check_well_formed(&subscription)?;
            check(&subscription)?;
            if state.monitoring_subscriptions.contains_key(id) {
                return Err(ApiError::new(
                    409,
                    "MonitoringSubscriptionAlreadyExists",
                    "A monitoring subscription already exists for the specified distribution.",
                ));
            }
            state.monitoring_subscriptions.insert(id.to_owned(), subscription.clone());
            Ok(ApiReply::ok(subscription))
        }
        _ => match state.monitoring_subscriptions.remove(id) {
            Some(_) => Ok(ApiReply::ok(Element::new("DeleteMonitoringSubscriptionResult"))),
            None => Err(no_subscription()),
        },
    }
}
