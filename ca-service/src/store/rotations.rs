//! Rotations on command (`ca-service rotate`, `POST /api/v1/rotations`): the records,
//! the store's interface, and the statements both dialects share.
//!
//! A rotation is one row naming its scope (a device, a batch or a model), not a row per
//! device: planning a rotation of 100,000 devices is one insert. Which devices are
//! covered, replaced or pending is decided when asked, from the indexes that already
//! serve the registry: a device is *replaced* when it holds a `valid` certificate
//! issued at or after the rotation opened.

use async_trait::async_trait;

use super::rows::Columns;
use super::{DeviceSelector, RevokedCert, StoreError};
use crate::audit::AuditEvent;

/// What happens at the deadline to certificates not yet replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterDeadline {
    /// Nothing: they stay valid and are reported.
    Nothing,
    /// Revoked with reason `superseded`.
    Revoke,
}

impl AfterDeadline {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterDeadline::Nothing => "nothing",
            AfterDeadline::Revoke => "revoke",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [AfterDeadline::Nothing, AfterDeadline::Revoke].into_iter().find(|a| a.as_str() == s)
    }
}

/// A rotation to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRotation {
    pub which: DeviceSelector,
    /// Unix seconds.
    pub opened_at: i64,
    pub deadline: i64,
    pub after_deadline: AfterDeadline,
    /// After a suspected key exposure: same-key renewal is refused.
    pub new_key: bool,
    pub reason: String,
    pub created_by: String,
}

/// A recorded rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRecord {
    pub id: i64,
    pub rotation: NewRotation,
    /// When its deadline was acted on (unix seconds); `None` while open.
    pub closed_at: Option<i64>,
    /// Certificates revoked at the deadline.
    pub revoked: Option<u64>,
}

/// How far a rotation has got: active devices covered, those replaced, those pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationProgress {
    pub devices: u64,
    pub replaced: u64,
    pub pending: u64,
}

/// Rotations on command.
#[async_trait]
pub trait RotationStore: Send + Sync {
    /// Records a rotation with its audit entry, in one transaction. `NotFound` if no
    /// device matches its scope.
    async fn create_rotation(&self, rotation: &NewRotation, audit: AuditEvent) -> Result<RotationRecord, StoreError>;
    async fn get_rotation(&self, id: i64) -> Result<Option<RotationRecord>, StoreError>;
    /// The newest `limit` rotations, newest first.
    async fn list_rotations(&self, limit: i64) -> Result<Vec<RotationRecord>, StoreError>;
    /// The rotations covering a device by its id, batch or model, oldest first.
    async fn device_rotations(
        &self,
        device_id: &str,
        batch: &str,
        model: &str,
    ) -> Result<Vec<RotationRecord>, StoreError>;
    async fn rotation_progress(&self, rotation: &RotationRecord) -> Result<RotationProgress, StoreError>;
    /// Active devices of the rotation not yet replaced, ids after `after`, in id order.
    async fn rotation_pending(
        &self,
        rotation: &RotationRecord,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Open rotations whose deadline is at or before `now`.
    async fn due_rotations(&self, now: i64) -> Result<Vec<RotationRecord>, StoreError>;
    /// Acts on a rotation's deadline, once: marks it closed at `now` and, if it says
    /// so, revokes (reason `superseded`, at `now`) the `valid` certificates of its
    /// pending devices, with the audit entry, in one transaction. `None` if it was
    /// closed already (another instance did it). The revoked certificates come in the
    /// order they were issued.
    async fn close_rotation(
        &self,
        id: i64,
        now: i64,
        audit: AuditEvent,
    ) -> Result<Option<(RotationRecord, Vec<RevokedCert>)>, StoreError>;
}

pub(crate) const ROTATION_COLUMNS: &str =
    "id, scope, value, opened_at, deadline, after_deadline, new_key, reason, created_by, closed_at, revoked";

pub(crate) fn rotation_from_row(row: &impl Columns) -> Result<RotationRecord, StoreError> {
    let id: i64 = row.get(0)?;
    let scope: String = row.get(1)?;
    let value: String = row.get(2)?;
    let which = match scope.as_str() {
        "device" => DeviceSelector::Device(value),
        "batch" => DeviceSelector::Batch(value),
        "model" => DeviceSelector::Model(value),
        other => return Err(StoreError::Corrupt(format!("rotation {id}: unknown scope '{other}'"))),
    };
    let after: String = row.get(5)?;
    let after_deadline = AfterDeadline::parse(&after)
        .ok_or_else(|| StoreError::Corrupt(format!("rotation {id}: unknown after_deadline '{after}'")))?;
    let revoked: Option<i64> = row.get(10)?;
    Ok(RotationRecord {
        id,
        rotation: NewRotation {
            which,
            opened_at: row.get(3)?,
            deadline: row.get(4)?,
            after_deadline,
            new_key: row.get(6)?,
            reason: row.get(7)?,
            created_by: row.get(8)?,
        },
        closed_at: row.get(9)?,
        revoked: revoked.map(|n| u64::try_from(n).unwrap_or(0)),
    })
}

/// The scope's (column name, value): `scope` is stored as the selector's column.
pub(crate) fn scope_of(which: &DeviceSelector) -> (&'static str, &str) {
    let (column, value) = which.column_and_value();
    (if column == "device_id" { "device" } else { column }, value)
}

/// `d` replaced: a `valid` certificate from `$2` on ([`replacements_from`]).
const REPLACED: &str = "EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = d.device_id \
                        AND n.status = 'valid' AND n.created_at >= $2)";

/// $1 = the scope's value, $2 = [`replacements_from`]: (devices, replaced).
pub(crate) fn progress_sql(column: &str) -> String {
    format!(
        "SELECT count(*), coalesce(sum(CASE WHEN {REPLACED} THEN 1 ELSE 0 END), 0) FROM devices d \
         WHERE d.{column} = $1 AND d.state = 'active'"
    )
}

/// $1 = value, $2 = [`replacements_from`], $3 = after id, $4 = limit.
pub(crate) fn pending_sql(column: &str) -> String {
    format!(
        "SELECT d.device_id FROM devices d WHERE d.{column} = $1 AND d.state = 'active' AND NOT {REPLACED} \
         AND d.device_id > $3 ORDER BY d.device_id LIMIT $4"
    )
}

/// The certificates a deadline revokes: $1 = value, $2 = [`replacements_from`]. Pending
/// devices' `valid` certificates are all older than the rotation (a newer one would
/// have replaced it).
pub(crate) fn unreplaced_where(column: &str) -> String {
    format!(
        "status = 'valid' AND created_at < $2 AND device_id IN (SELECT d.device_id FROM devices d \
         WHERE d.{column} = $1 AND d.state = 'active' AND NOT {REPLACED})"
    )
}

/// $1 = device id, $2 = batch, $3 = model.
pub(crate) fn device_rotations_sql() -> String {
    format!(
        "SELECT {ROTATION_COLUMNS} FROM rotations WHERE (scope = 'device' AND value = $1) \
         OR (scope = 'batch' AND value = $2) OR (scope = 'model' AND value = $3) ORDER BY id"
    )
}

/// Where replacements start, in the µs of `certificates.created_at` (the `$2` of the
/// statements above): the second after the rotation opened, so that a certificate
/// issued in that second counts as one to replace (as `enrollment::ra::window` has it).
pub(crate) fn replacements_from(r: &RotationRecord) -> i64 {
    r.rotation.opened_at.saturating_add(1).saturating_mul(1_000_000)
}

/// The deadline's audit entry with the number of certificates it revoked.
pub(crate) fn with_revoked(mut audit: AuditEvent, revoked: i64) -> AuditEvent {
    let mut details: serde_json::Value = serde_json::from_str(&audit.details).unwrap_or_else(|_| serde_json::json!({}));
    details["revoked"] = revoked.into();
    audit.details = details.to_string();
    audit
}
