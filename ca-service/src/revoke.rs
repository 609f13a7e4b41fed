//! Revocation, written once for both doors it comes through: `ca-service revoke` and
//! the admin API's revoke endpoints (a certificate; a device, a batch or a model).
//!
//! Every revocation takes the same three steps: a typed [`Order`] (the reason is a
//! [`Reason`], parsed from its RFC 5280 name here and nowhere else); the status change
//! and its audit entry in one store transaction; then publication.
//!
//! Publication depends on the process, not on the caller. A serving instance holds the
//! pre-signed OCSP cache and the CRL publisher: it re-signs the OCSP answers of what it
//! just revoked before it answers, and has its CRL publisher re-sign at once the
//! complete and delta CRLs the revocation changed ([`Publish::Here`]), so the caller
//! never learns of a revocation that OCSP clients cannot see yet, and every CRL lists
//! it moments later. The CLI process has no OCSP cache: it re-signs the changed CRLs
//! itself before it returns ([`Publish::Here`] without a publisher), and the serving
//! instances pick the change up from the store for OCSP — their revocation watch polls
//! it every [`crate::ocsp::WATCH_INTERVAL`] and re-signs the answers — while EST refuses
//! the certificates at once (it checks the store). Every instance serves the newest
//! stored CRLs, so other instances serve an API revocation's CRLs as soon as the
//! revoking one stored them; and should a revoking process fail to re-sign them, the
//! scheduled CRL job re-signs a complete CRL that misses a revocation within
//! `crl.regenerate_secs`.

use std::borrow::Cow;

use revocation::Reason;

use crate::audit::AuditEvent;
use crate::crl::CrlPublisher;
use crate::issuance::Pki;
use crate::ocsp::OcspService;
use crate::store::{CertRecord, DeviceSelector, RevokedCert, Store, StoreError};

/// Audit action of a certificate's revocation.
pub const CERTIFICATE_ACTION: &str = "certificate.revoke";
/// Audit action of a device, batch or model revocation.
pub const DEVICES_ACTION: &str = "device.revoke";

/// The RFC 5280 CRLReason names one may revoke for. removeFromCRL (8) is a delta-CRL
/// instruction, not a reason to revoke.
const REASONS: [(&str, Reason); 9] = [
    ("unspecified", Reason::Unspecified),
    ("keyCompromise", Reason::KeyCompromise),
    ("cACompromise", Reason::CaCompromise),
    ("affiliationChanged", Reason::AffiliationChanged),
    ("superseded", Reason::Superseded),
    ("cessationOfOperation", Reason::CessationOfOperation),
    ("certificateHold", Reason::CertificateHold),
    ("privilegeWithdrawn", Reason::PrivilegeWithdrawn),
    ("aACompromise", Reason::AaCompromise),
];

/// An RFC 5280 CRLReason name → the reason (case-insensitive); `Err` names the choices
/// and repeats at most 64 characters of `name`, escaped, so it is safe to log.
pub fn parse_reason(name: &str) -> Result<Reason, String> {
    REASONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, r)| *r).ok_or_else(|| {
        let shown: String = name.chars().take(64).collect();
        format!(
            "unknown revocation reason '{}' (one of: {})",
            shown.escape_debug(),
            REASONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The RFC 5280 names one may revoke for, in code order.
pub fn reason_names() -> impl Iterator<Item = &'static str> {
    REASONS.iter().map(|(n, _)| *n)
}

/// A reason's RFC 5280 name.
pub fn reason_name(reason: Reason) -> &'static str {
    REASONS.iter().find(|(_, r)| *r == reason).map_or("removeFromCRL", |(n, _)| *n)
}

/// What to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One certificate we issued.
    Certificate { issuer: String, serial: Vec<u8> },
    /// Devices (one, a batch or a model): all their live certificates, and they can
    /// no longer enroll or renew.
    Devices(DeviceSelector),
}

impl Target {
    fn action(&self) -> &'static str {
        match self {
            Target::Certificate { .. } => CERTIFICATE_ACTION,
            Target::Devices(_) => DEVICES_ACTION,
        }
    }

    /// The audit target: `certificate:<issuer>/<serial hex>` or the selector.
    fn audit_target(&self) -> String {
        match self {
            Target::Certificate { issuer, serial } => format!("certificate:{issuer}/{}", hex::encode(serial)),
            Target::Devices(which) => which.to_string(),
        }
    }
}

/// Which door the order came through; the API's audit entries say `"via": "api"`,
/// the console's `"via": "console"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    Console,
}

/// A revocation: what, why, and who asks (the audit actor).
#[derive(Clone, Debug)]
pub struct Order<'a> {
    pub target: Target,
    pub reason: Reason,
    pub actor: &'a str,
    pub via: Via,
}

/// What the store revoked.
#[derive(Debug)]
pub enum Revoked {
    /// The certificate, as now stored.
    Certificate(CertRecord),
    /// How many devices matched, and the certificates this revoked.
    Devices { which: DeviceSelector, devices: u64, certificates: Vec<RevokedCert> },
}

impl Revoked {
    /// Every certificate this revocation revoked.
    pub fn certificates(&self) -> Cow<'_, [RevokedCert]> {
        match self {
            Revoked::Certificate(record) => Cow::Owned(vec![RevokedCert::from(record)]),
            Revoked::Devices { certificates, .. } => Cow::Borrowed(certificates),
        }
    }
}

/// What happens after the commit, as far as this process can (see the module docs).
#[derive(Clone, Copy, Debug)]
pub enum Publish<'a> {
    /// This process cannot sign (a CLI whose CA keys could not be loaded): serving
    /// instances pick the revocation up from the store.
    Elsewhere,
    /// Re-sign the OCSP answers now (with an OCSP cache) and the CRLs the revocation
    /// changed: through the CRL publisher of a serving instance, which signs them at
    /// once in the background, or without one (the CLI) here, before returning.
    Here { pki: &'a Pki, ocsp: Option<&'a OcspService>, crls: Option<&'a CrlPublisher> },
}

/// Revokes: the status change and its audit entry in one transaction, then publishes.
/// `NotFound` if we never issued the certificate or no device matches; `Conflict` if
/// the certificate is already revoked.
pub async fn revoke(store: &dyn Store, order: Order<'_>, publish: Publish<'_>) -> Result<Revoked, StoreError> {
    if order.reason == Reason::RemoveFromCrl {
        return Err(StoreError::Conflict("removeFromCRL is a delta-CRL instruction, not a reason to revoke".into()));
    }
    let code = i32::from(order.reason.code());
    let mut details = serde_json::json!({ "reason": reason_name(order.reason), "reason_code": code });
    match order.via {
        Via::Cli => {}
        Via::Api => details["via"] = "api".into(),
        Via::Console => details["via"] = "console".into(),
    }
    let audit =
        AuditEvent::success(order.actor, order.target.action(), order.target.audit_target()).with_details(details);
    let now = crate::issuance::unix(std::time::SystemTime::now());
    let revoked = match order.target {
        Target::Certificate { issuer, serial } => {
            Revoked::Certificate(store.revoke_certificate(&issuer, &serial, order.reason, now, audit).await?)
        }
        Target::Devices(which) => {
            let (devices, certificates) = store.revoke_devices(&which, order.reason, now, audit).await?;
            Revoked::Devices { which, devices, certificates }
        }
    };
    publish_revoked(publish, &revoked.certificates()).await;
    Ok(revoked)
}

/// Publishes revocations already committed (see the module docs): every revocation
/// path ends here, the deadline of a rotation too.
pub async fn publish_revoked(publish: Publish<'_>, certificates: &[RevokedCert]) {
    let Publish::Here { pki, ocsp, crls } = publish else { return };
    if let Some(ocsp) = ocsp {
        ocsp.revoked(pki, certificates).await;
    }
    match crls {
        Some(crls) => crls.revoked(certificates),
        None if !certificates.is_empty() => {
            let changed = crate::crl::changed_by(certificates);
            if let Err(e) = crate::crl::publish_revoked(pki, &changed).await {
                // Committed all the same: the serving instances' CRL job carries it.
                tracing::warn!(error = %e, "revoked, but re-signing the CRLs failed; the CRL job will");
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_name_and_round_trip() {
        assert_eq!(parse_reason("keyCompromise"), Ok(Reason::KeyCompromise));
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(Reason::KeyCompromise));
        for (name, reason) in REASONS {
            assert_eq!(parse_reason(name), Ok(reason));
            assert_eq!(reason_name(reason), name);
            assert_eq!(reason_name(reason), name);
        }
        let err = parse_reason("removeFromCRL").unwrap_err();
        assert!(
            err.starts_with("unknown revocation reason 'removeFromCRL' (one of: unspecified, keyCompromise"),
            "{err}"
        );
    }

    async fn store_with_batch() -> (tempfile::TempDir, std::sync::Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite:{}", dir.path().join("pki.db").display())).await.unwrap();
        let devices: Vec<_> = ["D-1", "D-2"]
            .into_iter()
            .map(|id| crate::store::DeviceRecord {
                device_id: id.into(),
                model: "sensor".into(),
                class: "default".into(),
                batch: "b1".into(),
                hardware_serial: None,
                state: crate::store::DeviceState::Expected,
                reprovision: false,
            })
            .collect();
        store.add_devices(&devices, AuditEvent::success("test", "device.register", "batch:b1")).await.unwrap();
        (dir, store)
    }

    async fn last_audit(store: &dyn Store) -> AuditEvent {
        store.audit_entries(0, 1000).await.unwrap().pop().unwrap().event
    }

    #[tokio::test]
    async fn one_transaction_audits_what_and_why_and_the_door() {
        let (_dir, store) = store_with_batch().await;
        let order = |target, via| Order { target, reason: Reason::KeyCompromise, actor: "token:1:ops", via };
        let batch = Target::Devices(DeviceSelector::Batch("b1".into()));
        let revoked = revoke(store.as_ref(), order(batch, Via::Api), Publish::Elsewhere).await.unwrap();
        let Revoked::Devices { which, devices, certificates } = &revoked else { panic!("{revoked:?}") };
        assert_eq!((which, *devices, certificates.len()), (&DeviceSelector::Batch("b1".into()), 2, 0));
        let event = last_audit(store.as_ref()).await;
        assert_eq!(
            (event.actor.as_str(), event.action.as_str(), event.target.as_str()),
            ("token:1:ops", DEVICES_ACTION, "batch:b1")
        );
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap();
        assert_eq!(details, serde_json::json!({ "reason": "keyCompromise", "reason_code": 1, "via": "api" }));

        let device = Target::Devices(DeviceSelector::Device("D-1".into()));
        revoke(store.as_ref(), order(device, Via::Cli), Publish::Elsewhere).await.unwrap();
        let details: serde_json::Value = serde_json::from_str(&last_audit(store.as_ref()).await.details).unwrap();
        assert_eq!(details, serde_json::json!({ "reason": "keyCompromise", "reason_code": 1 }));
    }

    #[tokio::test]
    async fn refusals_change_nothing() {
        let (_dir, store) = store_with_batch().await;
        let before = store.audit_entries(0, 1000).await.unwrap().len();
        let unknown = Target::Certificate { issuer: "device".into(), serial: vec![0x0b, 0xad] };
        let order = Order { target: unknown, reason: Reason::Superseded, actor: "cli:test", via: Via::Cli };
        assert!(matches!(revoke(store.as_ref(), order, Publish::Elsewhere).await, Err(StoreError::NotFound(_))));
        let batch = Target::Devices(DeviceSelector::Batch("b1".into()));
        let order = Order { target: batch, reason: Reason::RemoveFromCrl, actor: "cli:test", via: Via::Cli };
        assert!(matches!(revoke(store.as_ref(), order, Publish::Elsewhere).await, Err(StoreError::Conflict(_))));
        assert_eq!(store.audit_entries(0, 1000).await.unwrap().len(), before);
        assert!(store.get_device("D-1").await.unwrap().is_some_and(|d| d.state == crate::store::DeviceState::Expected));
    }
}
