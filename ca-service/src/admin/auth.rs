//! Who is calling and what they may do: the operator-certificate and bearer-token
//! principals, the role table, and API tokens.
//!
//! [`allowed`] is the only place that decides which role may perform which
//! [`Operation`]; [`super::handle`] consults it for every endpoint, so no handler holds
//! a rule of its own. Unknown, wrong and revoked tokens all get the same 401, and an
//! unknown token id costs as much to check as a wrong secret.

use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use crate::config::ProfileKind;
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::store::{ApiToken, Role};

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "pki_";

const INVALID_TOKEN: &str = "invalid or revoked API token";

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    RevokeCertificate,
    RevokeDevice,
    ReadCertificate,
    ListDeviceCertificates,
    ReadAudit,
    SubmitUpdateRequest,
    ApproveUpdateRequest,
    RejectUpdateRequest,
    SignUpdateRequest,
    ReadUpdateRequests,
}

impl Operation {
    /// The audit action.
    pub fn action(self) -> &'static str {
        match self {
            Operation::RevokeCertificate => crate::revoke::CERTIFICATE_ACTION,
            Operation::RevokeDevice => crate::revoke::DEVICES_ACTION,
            Operation::ReadCertificate => "api.certificate.read",
            Operation::ListDeviceCertificates => "api.device.certificates",
            Operation::ReadAudit => "api.audit.read",
            Operation::SubmitUpdateRequest => "update-request.submit",
            Operation::ApproveUpdateRequest => "update-request.approve",
            Operation::RejectUpdateRequest => "update-request.reject",
            Operation::SignUpdateRequest => "update-request.sign",
            Operation::ReadUpdateRequests => "api.update-request.read",
        }
    }

    /// A read changes nothing, so nothing else audits it: [`super::handle`] records
    /// its success. Changes are audited in the transaction that makes them.
    pub(super) fn is_read(self) -> bool {
        matches!(
            self,
            Operation::ReadCertificate
                | Operation::ListDeviceCertificates
                | Operation::ReadAudit
                | Operation::ReadUpdateRequests
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Operation::RevokeCertificate => "revoke certificates",
            Operation::RevokeDevice => "revoke devices",
            Operation::ReadCertificate => "read certificates",
            Operation::ListDeviceCertificates => "list a device's certificates",
            Operation::ReadAudit => "read the audit log",
            Operation::SubmitUpdateRequest => "request update-signing certificates",
            Operation::ApproveUpdateRequest => "approve update-signing requests",
            Operation::RejectUpdateRequest => "reject update-signing requests",
            Operation::SignUpdateRequest => "sign approved update-signing requests",
            Operation::ReadUpdateRequests => "read update-signing requests",
        }
    }
}

/// THE authorization table: which roles may perform each operation.
pub fn allowed(op: Operation) -> &'static [Role] {
    match op {
        Operation::RevokeCertificate | Operation::RevokeDevice => &[Role::Admin, Role::Operator],
        Operation::ReadCertificate | Operation::ListDeviceCertificates => &[Role::Admin, Role::Operator, Role::Auditor],
        Operation::ReadAudit => &[Role::Admin, Role::Auditor],
        // The two-person rule needs designated people: not even admin submits or approves.
        Operation::SubmitUpdateRequest => &[Role::ReleaseManager],
        Operation::ApproveUpdateRequest | Operation::RejectUpdateRequest => &[Role::UpdateApprover],
        Operation::SignUpdateRequest => &[Role::ReleaseManager, Role::UpdateApprover],
        Operation::ReadUpdateRequests => &[Role::Admin, Role::Auditor, Role::ReleaseManager, Role::UpdateApprover],
    }
}

/// A new token: the string to show once (`pki_<id>.<secret>`) and the record to store.
pub fn new_token(name: &str, role: Role, created_at_us: i64) -> Result<(zeroize::Zeroizing<String>, ApiToken), String> {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let (secret, secret_hash) = crate::credentials::new_secret()?;
    let shown = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{id}.{}", secret.as_str()));
    Ok((shown, ApiToken { id, name: name.to_string(), role, secret_hash, created_at: created_at_us, revoked_at: None }))
}

/// `pki_<id>.<secret>` → (id, secret); `None` if it is not of that shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some((id, secret))
}

/// The audit actor of a token.
pub fn actor_of(token: &ApiToken) -> String {
    format!("token:{}:{}", token.id, token.name)
}

/// A hash to verify against when the token id is unknown, so that an unknown id costs
/// as much as a wrong secret.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY.get_or_init(|| crate::credentials::new_secret().ok().map(|(_, phc)| phc)).as_deref()
}

/// Who is calling: a person (operator certificate) or an API token, and its role.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What the two-person rule compares: the token's or the certificate's name.
    pub name: String,
    pub role: Role,
}

/// Authenticates the caller — an operator client certificate presented in the TLS
/// handshake, or else a bearer token — and checks its role may perform `op`. Sets
/// `actor` as soon as the caller is known, so a refusal is audited against who asked.
pub(super) async fn authorize(
    pki: &Pki,
    req: &HttpRequest,
    op: Operation,
    actor: &mut String,
) -> Result<Principal, Refusal> {
    let has_certificate = req.conn_data::<crate::est::PeerCertificate>().is_some();
    let principal = if req.headers().get(header::AUTHORIZATION).is_none() && has_certificate {
        operator_certificate(pki, req, actor).await?
    } else {
        let token = bearer_token(pki, req, actor).await?;
        Principal { name: token.name, role: token.role }
    };
    if !allowed(op).contains(&principal.role) {
        return Err(Refusal::forbidden(format!("role {} may not {}", principal.role, op.describe())));
    }
    Ok(principal)
}

/// An operator certificate (profile kind `operator`): issued by us, valid, not
/// revoked; its CN names the person and its OU the role.
async fn operator_certificate(pki: &Pki, req: &HttpRequest, actor: &mut String) -> Result<Principal, Refusal> {
    let Some((_, profile)) = pki.config.profiles.iter().find(|(_, p)| p.kind == ProfileKind::Operator) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "operator certificates are not configured; use an API token",
        ));
    };
    let cert = crate::est::client_certificate(pki, req, &profile.issuer, ProfileKind::Operator)
        .await
        .map_err(operator_refusal)?;
    let (name, role) = crate::profile::operator_identity(&cert.der)
        .ok_or_else(|| Refusal::forbidden("the operator certificate names no person or role"))?;
    *actor = format!("operator:{name}:{}", &cert.fingerprint[..16]);
    let role =
        Role::parse(&role).map_err(|_| Refusal::forbidden(format!("unknown role '{role}' in the certificate")))?;
    Ok(Principal { name, role })
}

/// An operator certificate that is not a valid credential — not ours, expired, revoked
/// or replaced — gets 401, as a wrong or revoked token does (README: missing, wrong or
/// revoked credentials alike). A valid certificate of another kind (a device's, a
/// station's) authenticates someone who is no operator: 403.
fn operator_refusal(r: enrollment::ra::Refusal) -> Refusal {
    use enrollment::ra::Refusal as Ra;
    let unauthorized = matches!(
        r,
        Ra::ForeignCertificate(_) | Ra::CertificateOutOfValidity | Ra::CertificateRevoked | Ra::CertificateSuperseded
    );
    let mut refusal = Refusal::from(r);
    if unauthorized {
        refusal.status = StatusCode::UNAUTHORIZED;
    }
    refusal
}

/// Authenticates the bearer token; sets `actor`.
async fn bearer_token(pki: &Pki, req: &HttpRequest, actor: &mut String) -> Result<ApiToken, Refusal> {
    let unauthorized = || Refusal::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing credential (Authorization: Bearer pki_…, or an operator client certificate)",
        ));
    };
    let value = value.to_str().map_err(|_| unauthorized())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(unauthorized)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized());
    }
    let (id, secret) = parse_token(token.trim()).ok_or_else(unauthorized)?;
    *actor = format!("token:{id}:?");
    let stored = pki.store.get_api_token(id).await.map_err(Refusal::from)?;
    let phc = match &stored {
        Some(t) => Some(t.secret_hash.clone()),
        None => dummy_hash().map(str::to_string),
    };
    let secret = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
    let ok = tokio::task::spawn_blocking(move || phc.is_some_and(|p| crate::credentials::verify(&p, &secret)))
        .await
        .unwrap_or(false);
    let token = match stored {
        Some(t) if ok && t.revoked_at.is_none() => t,
        _ => return Err(unauthorized()),
    };
    *actor = actor_of(&token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_their_shape() {
        assert_eq!(parse_token("pki_0123456789abcdef.s3cret"), Some(("0123456789abcdef", "s3cret")));
        assert_eq!(parse_token("pki_0123456789abcdef."), None);
        assert_eq!(parse_token("pki_0123.s3cret"), None);
        assert_eq!(parse_token("0123456789abcdef.s3cret"), None);
        assert_eq!(parse_token("pki_0123456789abcdeg.s3cret"), None);
    }

    #[test]
    fn new_tokens_verify_and_parse() {
        let (shown, token) = new_token("ops", Role::Operator, 1).unwrap();
        let (id, secret) = parse_token(&shown).unwrap();
        assert_eq!(id, token.id);
        assert!(crate::credentials::verify(&token.secret_hash, secret.as_bytes()));
        assert_eq!(actor_of(&token), format!("token:{id}:ops"));
    }

    #[test]
    fn an_invalid_operator_certificate_is_unauthorized() {
        use enrollment::ra::Refusal as Ra;
        for r in [Ra::CertificateRevoked, Ra::CertificateOutOfValidity, Ra::ForeignCertificate("station".into())] {
            let reason = r.to_string();
            let refusal = operator_refusal(r);
            assert_eq!((refusal.status, refusal.reason), (StatusCode::UNAUTHORIZED, reason));
        }
        let other_kind = operator_refusal(Ra::NotAnIdentity("station".into()));
        assert_eq!(other_kind.status, StatusCode::FORBIDDEN, "a valid certificate of another kind is no operator");
    }

    #[test]
    fn the_role_table() {
        use Operation::*;
        assert!(allowed(RevokeCertificate).contains(&Role::Operator));
        assert!(!allowed(RevokeCertificate).contains(&Role::Auditor));
        assert!(allowed(ReadAudit).contains(&Role::Auditor));
        assert!(!allowed(ReadAudit).contains(&Role::Operator));
        for op in [RevokeCertificate, RevokeDevice, ReadCertificate, ListDeviceCertificates, ReadAudit] {
            assert!(allowed(op).contains(&Role::Admin));
            assert!(!allowed(op).contains(&Role::ProvisioningStation));
        }
    }
}
