//! Update-signing certificates for the OTA pipeline (DESIGN §3, "Update authority").
//!
//! A release manager submits the pipeline's CSR with the device classes the updates
//! are for. The request waits until `updates.approvals` distinct update approvers —
//! none of them the requester — approve it before it expires; only then does the
//! Update Authority CA sign, and the request is marked issued in the same transaction
//! that stores the certificate, so a rejected, expired or already-fulfilled request
//! can never be signed. Nothing else issues update-signing certificates: the
//! generic issuance path refuses the profile.
//!
//! The certificate carries EKU codeSigning and one certificate-policy OID per device
//! class (`<updates.policy_arc>.<n>`); a device accepts an update only if its own
//! class OID is among them (see `update_trust`).

use std::time::SystemTime;

use actix_web::http::StatusCode;
use const_oid::ObjectIdentifier;

use crate::audit::AuditEvent;
use crate::config::ProfileConfig;
use crate::est::Refusal;
use crate::issuance::{check_policy, unix, IssueError, Issued, Pki};
use crate::profile::Subject;
use crate::store::{IssuanceEffect, RequestStatus, UpdateRequest, UpdateRequestStore};

/// What a release manager asks for.
#[derive(Debug, Clone)]
pub struct NewUpdateRequest {
    /// PKCS#10, PEM or DER.
    pub csr: Vec<u8>,
    pub classes: Vec<String>,
    /// Defaults to the profile's validity; at most `updates.max_validity_days`.
    pub validity_days: Option<u32>,
}

fn profile(pki: &Pki) -> Result<(&str, &ProfileConfig), Refusal> {
    let name = pki.config.updates.profile.as_str();
    let profile = pki.config.profiles.get(name).ok_or_else(|| {
        tracing::error!(profile = name, "updates.profile names no profile");
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    Ok((name, profile))
}

/// The device classes' policy OIDs; every class must be configured.
fn class_oids(pki: &Pki, classes: &[String]) -> Result<Vec<ObjectIdentifier>, Refusal> {
    if classes.is_empty() {
        return Err(Refusal::bad_request("name at least one device class"));
    }
    classes
        .iter()
        .map(|c| {
            pki.config.updates.class_oid(c).ok_or_else(|| {
                let known = pki.config.updates.classes.keys().cloned().collect::<Vec<_>>().join(", ");
                Refusal::bad_request(format!("unknown device class '{c}' (configured: {known})"))
            })
        })
        .collect()
}

/// Checks a request and records it as pending. `requester` is the principal's
/// name (what the two-person rule compares), `actor` its audit identity.
pub(crate) async fn submit(
    pki: &Pki,
    requester: &str,
    actor: &str,
    new: NewUpdateRequest,
) -> Result<UpdateRequest, Refusal> {
    let (profile_name, profile) = profile(pki)?;
    let csr = enrollment::csr::check_csr(&new.csr)?;
    check_policy(profile_name, profile, &csr).map_err(Refusal::from)?;
    let name = csr.common_name.clone().ok_or_else(|| Refusal::bad_request("the CSR subject has no commonName"))?;
    if name.is_empty() || name.len() > 64 {
        return Err(Refusal::bad_request("the CSR's commonName must be 1-64 characters"));
    }
    class_oids(pki, &new.classes)?;
    // Refused now rather than after two people approved it.
    if pki
        .store
        .public_key_compromised(&crate::issuance::sha256_hex(&csr.public_key_der))
        .await
        .map_err(Refusal::from)?
    {
        return Err(Refusal::bad_request(crate::issuance::KEY_COMPROMISED));
    }
    let mut classes = new.classes.clone();
    classes.sort();
    classes.dedup();
    let max = pki.config.updates.max_validity_days;
    let validity_days = new.validity_days.unwrap_or(profile.validity_days);
    if !(1..=max).contains(&validity_days) {
        return Err(Refusal::bad_request(format!("validity_days must be 1..={max}")));
    }
    let now = unix(SystemTime::now());
    let ttl = i64::try_from(pki.config.updates.request_ttl_secs).unwrap_or(i64::MAX);
    let request = UpdateRequest {
        id: hex::encode(rand::random::<[u8; 16]>()),
        profile: profile_name.to_string(),
        csr_der: csr.der.clone(),
        classes,
        validity_days,
        requester: requester.to_string(),
        status: RequestStatus::Pending,
        approvals: Vec::new(),
        rejected_by: None,
        reason: None,
        issued: None,
        created_at: now,
        expires_at: now.saturating_add(ttl),
    };
    let audit = AuditEvent::success(actor, "update-request.submit", format!("update-request:{}", request.id))
        .with_details(serde_json::json!({
            "requester": requester,
            "classes": request.classes,
            "validity_days": validity_days,
            "subject_cn": csr.common_name,
            "public_key_sha256": crate::issuance::sha256_hex(&csr.public_key_der),
        }));
    requests(pki).submit_update_request(&request, audit).await.map_err(Refusal::from)?;
    Ok(request)
}

/// Records `approver`'s approval; when it completes the quorum the certificate is
/// signed at once. The approval stands even if signing then fails (the request stays
/// `approved`; `sign` retries): the second result says how signing went, if tried.
pub(crate) async fn approve(
    pki: &Pki,
    approver: &str,
    actor: &str,
    id: &str,
) -> Result<(UpdateRequest, Option<Result<Issued, Refusal>>), Refusal> {
    let required = pki.config.updates.approvals;
    let audit = AuditEvent::success(actor, "update-request.approve", format!("update-request:{id}"))
        .with_details(serde_json::json!({ "approver": approver }));
    let request = requests(pki).approve_update_request(id, approver, required, audit).await.map_err(Refusal::from)?;
    if request.status != RequestStatus::Approved {
        return Ok((request, None));
    }
    let signed = sign(pki, &request, actor).await;
    if let Err(r) = &signed {
        crate::est::audit_refusal(pki, "update-request.sign", actor, &format!("update-request:{id}"), r).await;
    }
    let request = requests(pki).get_update_request(id).await.map_err(Refusal::from)?.unwrap_or(request);
    Ok((request, Some(signed)))
}

/// Signs an approved request (also the retry if signing failed after the last
/// approval). Refused unless the request is approved and unexpired at the moment
/// the certificate is stored.
pub(crate) async fn sign(pki: &Pki, request: &UpdateRequest, actor: &str) -> Result<Issued, Refusal> {
    if request.status != RequestStatus::Approved {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("update request '{}' is {}, not approved", request.id, request.status.as_str()),
        ));
    }
    let (profile_name, profile) = profile(pki)?;
    // Checked again: the configuration may have changed since submission.
    let csr = enrollment::csr::check_csr(&request.csr_der)?;
    check_policy(profile_name, profile, &csr).map_err(Refusal::from)?;
    let name = csr.common_name.clone().ok_or_else(|| Refusal::bad_request("the CSR subject has no commonName"))?;
    let subject = Subject::UpdateSigner { name, classes: class_oids(pki, &request.classes)? };
    let profile = ProfileConfig { validity_days: request.validity_days, ..profile.clone() };
    let effect = IssuanceEffect::FulfilUpdateRequest { id: request.id.clone() };
    pki.issue_checked(profile_name, &profile, subject, &csr.public_key_der, actor, Some(effect)).await.map_err(|e| {
        match e {
            IssueError::Refused(why) => Refusal::new(StatusCode::CONFLICT, why),
            other => Refusal::from(other),
        }
    })
}

/// Rejects a pending request for good.
pub(crate) async fn reject(pki: &Pki, by: &str, actor: &str, id: &str, reason: &str) -> Result<(), Refusal> {
    if reason.trim().is_empty() || reason.len() > 500 {
        return Err(Refusal::bad_request("give a reason of 1-500 characters"));
    }
    let audit = AuditEvent::success(actor, "update-request.reject", format!("update-request:{id}"))
        .with_details(serde_json::json!({ "rejected_by": by, "reason": reason }));
    requests(pki).reject_update_request(id, by, reason, audit).await.map_err(Refusal::from)
}

/// The part of the store this workflow keeps its requests in (signing them is the
/// issuance writer's, through `pki`).
fn requests(pki: &Pki) -> &dyn UpdateRequestStore {
    pki.store.as_ref()
}

/// Whether a stored request has passed its deadline without being issued.
pub fn expired(request: &UpdateRequest, now: SystemTime) -> bool {
    request.status != RequestStatus::Issued
        && request.status != RequestStatus::Rejected
        && unix(now) >= request.expires_at
}

/// The update trust bundle devices and the OTA pipeline pin: the update-signing
/// profile's issuing CA and every CA above it, root included, as PEM.
pub fn trust_bundle_pem(pki: &Pki) -> Option<String> {
    let issuer = &pki.config.profiles.get(&pki.config.updates.profile)?.issuer;
    let pem: String = pki
        .published_chain(issuer)
        .into_iter()
        .map(|der| ::pem::encode(&::pem::Pem::new("CERTIFICATE", der)))
        .collect();
    (!pem.is_empty()).then_some(pem)
}
