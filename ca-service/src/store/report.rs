//! What the lifecycle reports and the operator console ask the store and get back
//! (`crate::reports` builds the report questions; [`super::ReportStore`] and
//! [`super::AuditStore`] answer them from indexes).

use super::DeviceState;

/// Narrows a report: each field, when set, must equal the certificate's or its device's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportFilter {
    pub profile: Option<String>,
    pub issuer: Option<String>,
    pub batch: Option<String>,
    pub model: Option<String>,
}

/// What certificates expiring in a window are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Batch,
    Model,
    Profile,
    Issuer,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [GroupBy::Batch, GroupBy::Model, GroupBy::Profile, GroupBy::Issuer];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Batch => "batch",
            GroupBy::Model => "model",
            GroupBy::Profile => "profile",
            GroupBy::Issuer => "issuer",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The grouped column (fixed text, never the caller's).
    pub(crate) fn column(self) -> &'static str {
        match self {
            GroupBy::Batch => "d.batch",
            GroupBy::Model => "d.model",
            GroupBy::Profile => "c.profile",
            GroupBy::Issuer => "c.issuer",
        }
    }
}

/// Where a page of certificates ends: the next page starts after this
/// (notAfter, issuer, serial), the order the reports list in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertCursor {
    pub not_after: i64,
    pub issuer: String,
    pub serial_hex: String,
}

impl CertCursor {
    /// Before every certificate.
    pub fn start() -> Self {
        CertCursor { not_after: i64::MIN, issuer: String::new(), serial_hex: String::new() }
    }
}

/// A certificate in a report, with its device's batch and model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleRow {
    pub issuer: String,
    pub serial_hex: String,
    pub subject: String,
    pub profile: String,
    pub device_id: Option<String>,
    pub batch: Option<String>,
    pub model: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl LifecycleRow {
    pub fn cursor(&self) -> CertCursor {
        CertCursor { not_after: self.not_after, issuer: self.issuer.clone(), serial_hex: self.serial_hex.clone() }
    }
}

/// Certificates expiring in a window that share a batch, model, profile or issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryGroup {
    /// `None`: certificates without one (a batch or model of no device).
    pub key: Option<String>,
    pub count: u64,
    /// The first of them to expire (unix seconds).
    pub first_not_after: i64,
}

/// Narrows a device search: each field, when set, must equal the device's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    pub batch: Option<String>,
    pub model: Option<String>,
    pub state: Option<DeviceState>,
}

/// What revoking a device selector would revoke now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationPreview {
    /// The devices the selector matches (whatever their state).
    pub devices: u64,
    /// Their certificates not yet revoked (valid and superseded ones).
    pub certificates: u64,
}

/// Narrows the audit trail: each field, when set, must equal the entry's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
}
