//! Who is calling and what they may do: the operator-certificate and bearer-token
//! principals, the role table, and API tokens.
//!
//! [`allowed`] is the only place that decides which role may perform which
//! [`Operation`]; [`super::handle`] consults it for every endpoint, so no handler holds
//! a rule of its own. Unknown, wrong and revoked tokens all get the same 401, and an
//! unknown token id costs what a wrong secret does: one store read and one HMAC
//! (`crate::credentials`), no password hash. Failed attempts are limited per client
//! address (`crate::abuse`): an address out of failures gets 429 before its
//! credential is looked at.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use crate::abuse::Gate;
use crate::config::ProfileKind;
use crate::credentials::{CredentialKey, Subject, Verdict};
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
    /// Entry bundles of the transparency log (`/log/tile/entries/…`), when they are not
    /// public. Not audited when it succeeds: the log is what it reads, and a monitor
    /// fetching it must not grow it.
    ReadLogEntries,
    SubmitUpdateRequest,
    ApproveUpdateRequest,
    RejectUpdateRequest,
    SignUpdateRequest,
    ReadUpdateRequests,
    /// Lifecycle reports (`crate::reports`).
    ReadReports,
    /// Rotations on command (`crate::rotation`).
    CreateRotation,
    ReadRotations,
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
            Operation::ReadLogEntries => "log.entries.read",
            Operation::SubmitUpdateRequest => "update-request.submit",
            Operation::ApproveUpdateRequest => "update-request.approve",
            Operation::RejectUpdateRequest => "update-request.reject",
            Operation::SignUpdateRequest => "update-request.sign",
            Operation::ReadUpdateRequests => "api.update-request.read",
            Operation::ReadReports => "api.report.read",
            Operation::CreateRotation => crate::rotation::CREATE_ACTION,
            Operation::ReadRotations => "api.rotation.read",
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
                | Operation::ReadReports
                | Operation::ReadUpdateRequests
                | Operation::ReadRotations
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Operation::RevokeCertificate => "revoke certificates",
            Operation::RevokeDevice => "revoke devices",
            Operation::ReadCertificate => "read certificates",
            Operation::ListDeviceCertificates => "list a device's certificates",
            Operation::ReadAudit => "read the audit log",
            Operation::ReadLogEntries => "read the transparency log's entries",
            Operation::SubmitUpdateRequest => "request update-signing certificates",
            Operation::ApproveUpdateRequest => "approve update-signing requests",
            Operation::RejectUpdateRequest => "reject update-signing requests",
            Operation::SignUpdateRequest => "sign approved update-signing requests",
            Operation::ReadUpdateRequests => "read update-signing requests",
            Operation::ReadReports => "read lifecycle reports",
            Operation::CreateRotation => "rotate devices",
            Operation::ReadRotations => "read rotations",
        }
    }
}

/// THE authorization table: which roles may perform each operation.
pub fn allowed(op: Operation) -> &'static [Role] {
    match op {
        Operation::RevokeCertificate | Operation::RevokeDevice | Operation::CreateRotation => {
            &[Role::Admin, Role::Operator]
        }
        Operation::ReadCertificate
        | Operation::ListDeviceCertificates
        | Operation::ReadReports
        | Operation::ReadRotations => &[Role::Admin, Role::Operator, Role::Auditor],
        Operation::ReadAudit | Operation::ReadLogEntries => &[Role::Admin, Role::Auditor],
        // The two-person rule needs designated people: not even admin submits or approves.
        Operation::SubmitUpdateRequest => &[Role::ReleaseManager],
        Operation::ApproveUpdateRequest | Operation::RejectUpdateRequest => &[Role::UpdateApprover],
        Operation::SignUpdateRequest => &[Role::ReleaseManager, Role::UpdateApprover],
        Operation::ReadUpdateRequests => &[Role::Admin, Role::Auditor, Role::ReleaseManager, Role::UpdateApprover],
    }
}

/// A new token: the string to show once (`pki_<id>.<secret>`) and the record to store
/// (the secret's HMAC under `key`).
pub fn new_token(
    key: &CredentialKey,
    name: &str,
    role: Role,
    created_at_us: i64,
) -> (zeroize::Zeroizing<String>, ApiToken) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let (secret, secret_hash) = crate::credentials::new_secret(key, Subject::Token(&id));
    let shown = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{id}.{}", secret.as_str()));
    (shown, ApiToken { id, name: name.to_string(), role, secret_hash, created_at: created_at_us, revoked_at: None })
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

/// Who is calling: a person (operator certificate) or an API token, and its role.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What the two-person rule compares: the token's or the certificate's name.
    pub name: String,
    pub role: Role,
    /// The credential that proved it (the console checks it again on every request).
    pub credential: Credential,
}

/// What a principal authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An operator certificate, by its SHA-256 fingerprint (hex).
    Certificate { fingerprint: String },
    /// An API token, by its id.
    Token { id: String },
}

/// `Ok` if the role table lets `role` perform `op`; else the 403 that says so.
pub(crate) fn permit(role: Role, op: Operation) -> Result<(), Refusal> {
    if allowed(op).contains(&role) {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!("role {role} may not {}", op.describe())))
    }
}

/// Authenticates the caller — an operator client certificate presented in the TLS
/// handshake, or else a bearer token. Sets `actor` as soon as the caller is known, so
/// a refusal is audited against who asked. The role is checked by the caller of this
/// ([`permit`]).
pub(crate) async fn authenticate(
    pki: &Pki,
    gate: &Gate,
    req: &HttpRequest,
    actor: &mut String,
) -> Result<Principal, Refusal> {
    let has_certificate = req.conn_data::<crate::est::PeerCertificate>().is_some();
    if req.headers().get(header::AUTHORIZATION).is_none() && has_certificate {
        return operator_certificate(pki, req, actor).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| bearer_of(value).ok_or_else(|| Refusal::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN)));
    api_token(pki, gate, req, token.transpose(), actor).await
}

/// `Bearer <token>` → the token (trimmed); `None` for any other shape.
fn bearer_of(value: &header::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates an API token (`None`: none was given): the failure limit first — an
/// address that has used up its failed attempts is refused with 429 unchecked — then
/// the token; a 401 counts as a failed attempt. The API reads the token from the
/// `Authorization` header, the console from its sign-in form.
pub(crate) async fn api_token(
    pki: &Pki,
    gate: &Gate,
    req: &HttpRequest,
    token: Result<Option<&str>, Refusal>,
    actor: &mut String,
) -> Result<Principal, Refusal> {
    let client = req.peer_addr().map(|a| a.ip());
    if let Err(secs) = gate.failures.check(client, Instant::now()) {
        return Err(Refusal::too_many_failures(secs));
    }
    let checked = match token {
        Ok(token) => bearer_token(pki, &gate.key, token, actor).await,
        Err(r) => Err(r),
    };
    let token = checked.inspect_err(|r| {
        if r.status == StatusCode::UNAUTHORIZED {
            gate.failures.failed(client, Instant::now());
        }
    })?;
    Ok(Principal { name: token.name, role: token.role, credential: Credential::Token { id: token.id } })
}

/// An operator certificate (profile kind `operator`): issued by us, valid, not
/// revoked; its CN names the person and its OU the role.
pub(crate) async fn operator_certificate(
    pki: &Pki,
    req: &HttpRequest,
    actor: &mut String,
) -> Result<Principal, Refusal> {
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
    Ok(Principal { name, role, credential: Credential::Certificate { fingerprint: cert.fingerprint } })
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

/// Checks an API token (`None`: none was given); sets `actor`.
async fn bearer_token(
    pki: &Pki,
    key: &CredentialKey,
    token: Option<&str>,
    actor: &mut String,
) -> Result<ApiToken, Refusal> {
    let unauthorized = || Refusal::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    let Some(token) = token else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing credential (Authorization: Bearer pki_…, or an operator client certificate)",
        ));
    };
    let (id, secret) = parse_token(token.trim()).ok_or_else(unauthorized)?;
    *actor = format!("token:{id}:?");
    let stored = pki.store.get_api_token(id).await.map_err(Refusal::from)?;
    // One HMAC whether or not the id exists (microseconds, on this thread).
    let verdict = key.verify(stored.as_ref().map(|t| t.secret_hash.as_str()), Subject::Token(id), secret.as_bytes());
    match verdict {
        Verdict::Valid | Verdict::Invalid => {}
        Verdict::Legacy => tracing::warn!(
            token = id,
            "API token {id} has an Argon2id hash from an earlier version, which is no longer checked: \
             re-create it (`ca-service tokens revoke --id {id}`, then `tokens create`)"
        ),
        Verdict::OtherKey => tracing::warn!(
            token = id,
            key = key.id(),
            "API token {id} was hashed under another credential key: instances sharing a database \
             must share {}",
            crate::credentials::KEY_FILE
        ),
        Verdict::Malformed => tracing::error!(token = id, "API token {id} has a malformed stored hash"),
    }
    let token = match stored {
        Some(t) if verdict == Verdict::Valid && t.revoked_at.is_none() => t,
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
        let key = CredentialKey::random();
        let (shown, token) = new_token(&key, "ops", Role::Operator, 1);
        let (id, secret) = parse_token(&shown).unwrap();
        assert_eq!(id, token.id);
        let stored = Some(token.secret_hash.as_str());
        assert_eq!(key.verify(stored, Subject::Token(id), secret.as_bytes()), Verdict::Valid);
        assert_eq!(key.verify(stored, Subject::Token(id), b"x"), Verdict::Invalid);
        assert_eq!(CredentialKey::random().verify(stored, Subject::Token(id), secret.as_bytes()), Verdict::OtherKey);
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
