//! Rotation on command, written once for both doors it comes through
//! (`ca-service rotate` / `rotations`, and the admin API's `/api/v1/rotations`).
//!
//! A rotation moves the renewal window of a device, a batch or a model to *now …
//! deadline* (the window itself is `enrollment::ra::window`'s). Inside it, renewals are
//! exempt from the renewal rate limit, and after a suspected key exposure a renewal
//! must bring a new key. At the deadline, the rotation's choice applies to the devices
//! that have not renewed: nothing (they are reported), or their certificates revoked
//! with reason `superseded` — by the deadline job of whichever serving instance gets
//! there first ([`spawn_deadlines`]; the store closes a rotation once).

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditEvent;
use crate::issuance::{unix, Pki};
use crate::revoke::Publish;
use crate::store::{AfterDeadline, DeviceSelector, NewRotation, RotationProgress, RotationRecord, Store, StoreError};

/// Audit action of a new rotation.
pub const CREATE_ACTION: &str = "rotation.create";
/// Audit action of a deadline acted on.
pub const DEADLINE_ACTION: &str = "rotation.deadline";
/// The deadline job's actor.
pub const SYSTEM_ACTOR: &str = "system:rotation";
/// The furthest a deadline may be, from now.
pub const MAX_DEADLINE_SECS: i64 = 2 * 366 * 86_400;
/// The longest reason kept.
pub const MAX_REASON_BYTES: usize = 512;
/// How often the deadline job looks for rotations past their deadline.
pub const DEADLINE_CHECK: Duration = Duration::from_secs(2);

/// A rotation as the operator asks for it, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub which: DeviceSelector,
    pub deadline: i64,
    pub after_deadline: AfterDeadline,
    pub key_exposure: bool,
    pub reason: String,
}

/// The unchecked request (the CLI's flags, the API's JSON body).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub device: Option<String>,
    pub batch: Option<String>,
    pub model: Option<String>,
    /// RFC 3339, or a duration from now (`7d`, `12h`, `90m`, `3600`).
    pub by: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// `nothing` (default) or `revoke`.
    #[serde(default)]
    pub after_deadline: Option<String>,
    #[serde(default)]
    pub key_exposure: bool,
}

impl Request {
    /// The order, or why not (a reason fit for a 400 and an audit entry).
    pub fn check(self, now: i64) -> Result<Order, String> {
        let which = match (self.device, self.batch, self.model) {
            (Some(d), None, None) => DeviceSelector::Device(d),
            (None, Some(b), None) => DeviceSelector::Batch(b),
            (None, None, Some(m)) => DeviceSelector::Model(m),
            _ => return Err("name exactly one of device, batch or model".into()),
        };
        let (_, value) = which.column_and_value();
        crate::admin::check_identifier("scope", value)?;
        let deadline = parse_deadline(&self.by, now)?;
        let after_deadline = match self.after_deadline.as_deref() {
            None => AfterDeadline::Nothing,
            Some(s) => AfterDeadline::parse(s).ok_or_else(|| {
                format!("after_deadline must be 'nothing' or 'revoke', not '{}'", crate::admin::escaped(s))
            })?,
        };
        let reason = self.reason.unwrap_or_default();
        if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
            return Err(format!("the reason must be at most {MAX_REASON_BYTES} bytes without control characters"));
        }
        Ok(Order { which, deadline, after_deadline, key_exposure: self.key_exposure, reason })
    }
}

/// `by` as unix seconds: RFC 3339, or a duration from `now`; after `now`, within two
/// years.
pub fn parse_deadline(by: &str, now: i64) -> Result<i64, String> {
    parse_future("deadline", by, now)
}

/// A time an operator names (`what`, for the reason): RFC 3339, or a duration from
/// `now` (7d, 12h, 90m); after `now`, within two years.
pub fn parse_future(what: &str, by: &str, now: i64) -> Result<i64, String> {
    let shown = crate::admin::escaped(by);
    let at = match crate::reports::parse_window(by.trim_start_matches('+')) {
        Some(secs) => now.saturating_add(secs as i64),
        None => time::OffsetDateTime::parse(by, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                format!("the {what} '{shown}' is neither RFC 3339 (2026-12-31T00:00:00Z) nor a duration (7d, 12h, 90m)")
            })?
            .unix_timestamp(),
    };
    if at <= now {
        return Err(format!("the {what} '{shown}' is not in the future"));
    }
    if at - now > MAX_DEADLINE_SECS {
        return Err(format!("the {what} '{shown}' is more than two years away"));
    }
    Ok(at)
}

/// Records the rotation, audited as `actor` (`via`: "api" or the CLI). `NotFound` if
/// no device matches.
pub async fn create(
    store: &dyn Store,
    order: Order,
    actor: &str,
    via: Option<&str>,
) -> Result<RotationRecord, StoreError> {
    let now = unix(std::time::SystemTime::now());
    let mut details = serde_json::json!({
        "scope": order.which.to_string(),
        "deadline": order.deadline,
        "after_deadline": order.after_deadline.as_str(),
        "key_exposure": order.key_exposure,
        "reason": order.reason,
    });
    if let Some(via) = via {
        details["via"] = via.into();
    }
    let audit = AuditEvent::success(actor, CREATE_ACTION, "rotation:new").with_details(details);
    let rotation = NewRotation {
        which: order.which,
        opened_at: now,
        deadline: order.deadline,
        after_deadline: order.after_deadline,
        new_key: order.key_exposure,
        reason: order.reason,
        created_by: actor.to_string(),
    };
    store.create_rotation(&rotation, audit).await
}

/// A stored rotation as the renewal window sees it.
pub fn window_rotation(r: &RotationRecord) -> enrollment::ra::Rotation {
    enrollment::ra::Rotation {
        id: r.id,
        opened_at: r.rotation.opened_at,
        deadline: r.rotation.deadline,
        new_key_required: r.rotation.new_key,
    }
}

/// A rotation and its progress, as the API and the CLI show it.
pub fn json(r: &RotationRecord, progress: Option<RotationProgress>) -> serde_json::Value {
    let time = crate::issuance::rfc3339;
    let mut v = serde_json::json!({
        "id": r.id,
        "scope": r.rotation.which.to_string(),
        "opened_at": time(r.rotation.opened_at),
        "deadline": time(r.rotation.deadline),
        "after_deadline": r.rotation.after_deadline.as_str(),
        "key_exposure": r.rotation.new_key,
        "reason": r.rotation.reason,
        "created_by": r.rotation.created_by,
        "state": if r.closed_at.is_some() { "closed" } else { "open" },
        "closed_at": r.closed_at.and_then(time),
        "revoked_at_deadline": r.revoked,
    });
    if let Some(p) = progress {
        v["devices"] = p.devices.into();
        v["replaced"] = p.replaced.into();
        v["pending"] = p.pending.into();
    }
    v
}

/// Acts on every rotation past its deadline: closes it and revokes what it says to,
/// then publishes the revocations. Returns how many it closed here.
pub async fn close_due(pki: &Pki, publish: Publish<'_>) -> Result<usize, StoreError> {
    let now = unix(std::time::SystemTime::now());
    let mut closed = 0;
    for due in pki.store.due_rotations(now).await? {
        let audit = AuditEvent::success(SYSTEM_ACTOR, DEADLINE_ACTION, format!("rotation:{}", due.id)).with_details(
            serde_json::json!({ "scope": due.rotation.which.to_string(), "after_deadline": due.rotation.after_deadline.as_str() }),
        );
        let Some((r, revoked)) = pki.store.close_rotation(due.id, now, audit).await? else { continue };
        closed += 1;
        tracing::info!(rotation = r.id, revoked = revoked.len(), "rotation deadline reached");
        crate::revoke::publish_revoked(publish, &revoked).await;
    }
    Ok(closed)
}

/// Starts the deadline job on the current runtime.
pub fn spawn_deadlines(pki: Arc<Pki>, ocsp: Arc<crate::ocsp::OcspService>, crls: Arc<crate::crl::CrlPublisher>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DEADLINE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let publish = Publish::Here { pki: &pki, ocsp: Some(&ocsp), crls: Some(&crls) };
            if let Err(e) = close_due(&pki, publish).await {
                crate::telemetry::store_error(&e);
                tracing::warn!(error = %e, "acting on rotation deadlines failed; retrying");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn request(by: &str) -> Request {
        Request { batch: Some("B1".into()), by: by.into(), ..Request::default() }
    }

    #[test]
    fn deadlines_are_durations_or_rfc3339_in_the_future_within_two_years() {
        assert_eq!(parse_deadline("7d", NOW), Ok(NOW + 7 * 86_400));
        assert_eq!(parse_deadline("+90m", NOW), Ok(NOW + 5_400));
        // An absolute time, a minute ahead.
        let at = time::macros::datetime!(2027-01-15 0:00 UTC).unix_timestamp();
        assert_eq!(parse_deadline("2027-01-15T00:00:00Z", at - 60), Ok(at));
        assert!(parse_deadline("2020-01-01T00:00:00Z", NOW).unwrap_err().contains("not in the future"));
        assert!(parse_deadline("3000d", NOW).is_err());
        assert!(parse_deadline("tomorrow", NOW).unwrap_err().contains("neither RFC 3339"));
    }

    #[test]
    fn a_request_names_one_scope_and_known_choices() {
        let order = request("1d").check(NOW).unwrap();
        assert_eq!(order.which, DeviceSelector::Batch("B1".into()));
        assert_eq!(order.after_deadline, AfterDeadline::Nothing);
        let both = Request { device: Some("SN-1".into()), ..request("1d") };
        assert!(both.check(NOW).unwrap_err().contains("exactly one"));
        let bad = Request { after_deadline: Some("explode".into()), ..request("1d") };
        assert!(bad.check(NOW).unwrap_err().contains("'nothing' or 'revoke'"));
        let control = Request { reason: Some("a\nb".into()), ..request("1d") };
        assert!(control.check(NOW).is_err());
        let scope = Request { batch: Some("B\u{0}".into()), ..request("1d") };
        assert!(scope.check(NOW).unwrap_err().contains("control character"));
    }
}
