//! The service's side of the registration authority (`enrollment::ra`): the policy
//! built once from the configuration, and the two ports — the registry (our store)
//! and the issuer (our CAs) — that the pipeline reaches them through.

use std::sync::Arc;

use enrollment::ra::{
    self, ApprovalRequest, ApprovalState, CertState, Context, DeviceRecord, KnownCertificate, Lookup, Plan, Refusal,
};

use crate::audit::AuditEvent;
use crate::batch::Batcher;
use crate::config::Config;
use crate::credentials::{CredentialKey, Subject, Verdict};
use crate::issuance::{IssueError, Issued, Pki};
use crate::store::{
    CertRecord, CertStatus, EnrollmentContext, EnrollmentLookup, EnrollmentRequest, RequestStatus, Store, StoreError,
};

/// The registration authority as the service runs it.
pub type Authority = ra::RegistrationAuthority<StoreRegistry, PkiIssuer>;

/// Builds the registration authority; station credentials are checked with `key`.
/// Must run inside the tokio runtime that serves the store (the registry's batched
/// reads are a task on it).
pub fn authority(pki: Arc<Pki>, key: Arc<CredentialKey>) -> Authority {
    let registry = StoreRegistry::new(pki.store.clone(), pki.config.clone(), key);
    ra::RegistrationAuthority::new(policy(&pki.config), registry, PkiIssuer(pki))
}

/// The policy of every profile, the device models and the EST settings.
pub fn policy(config: &Config) -> ra::Policy {
    let est = &config.est;
    ra::Policy {
        profiles: config.profiles.iter().map(|(name, p)| (name.clone(), p.policy())).collect(),
        models: config
            .models
            .iter()
            .filter_map(|(name, m)| m.oid.parse().ok().map(|oid| (name.clone(), oid)))
            .collect(),
        renewal_min_interval_secs: est.renewal_min_interval_secs,
        allow_same_key_renewal: est.allow_same_key_renewal,
        station_enrollments_per_minute: est.station_enrollments_per_minute,
        retry_window_secs: est.retry_window_secs,
        backdate_secs: crate::profile::BACKDATE.as_secs(),
    }
}

/// A stored certificate as the pipeline sees it.
pub fn known(config: &Config, r: CertRecord) -> KnownCertificate {
    KnownCertificate {
        kind: config.profiles.get(&r.profile).map(|p| p.kind),
        state: match r.status {
            CertStatus::Valid => CertState::Valid,
            CertStatus::Revoked => CertState::Revoked,
            CertStatus::Superseded => CertState::Superseded,
        },
        ca: crate::hierarchy::generation_of(&r.issuer).0.to_string(),
        issuer: r.issuer,
        serial: r.serial,
        profile: r.profile,
        device_id: r.device_id,
        not_before: r.not_before,
        not_after: r.not_after,
        fingerprint: r.fingerprint,
        public_key_sha256: r.public_key_sha256,
        der: r.der,
    }
}

/// Store errors as refusals: absent → 404, state → 409, unreachable → 503, the rest
/// → 500 without details (those go to the log).
pub fn store_refusal(e: StoreError) -> Refusal {
    crate::telemetry::store_error(&e);
    match e {
        StoreError::NotFound(what) => Refusal::NotFound(what),
        StoreError::Conflict(why) => Refusal::Conflict(why),
        StoreError::AlreadyExists(what) => Refusal::Conflict(format!("{what} already exists")),
        StoreError::Unavailable(_) => {
            tracing::error!(error = %e, "storage unavailable");
            Refusal::Unavailable
        }
        other => {
            tracing::error!(error = %other, "storage error");
            Refusal::Internal
        }
    }
}

/// Issuance failures as refusals: the requester's mistakes keep their reason; ours
/// are logged and answered without details.
pub fn issue_refusal(e: IssueError) -> Refusal {
    if let IssueError::Store(store) = &e {
        crate::telemetry::store_error(store);
    }
    match e {
        IssueError::Ra(r) => r,
        IssueError::UnknownProfile(p) => Refusal::UnknownProfile(p),
        IssueError::Csr(e) => Refusal::InvalidRequest(e),
        IssueError::Policy(m) => Refusal::Policy(m),
        IssueError::Profile(crate::profile::ProfileError::DeviceId(id)) => Refusal::InvalidDeviceId(id),
        IssueError::Profile(crate::profile::ProfileError::UnknownModel(m)) => Refusal::UnknownModelName(m),
        IssueError::Profile(e @ crate::profile::ProfileError::Subject(..)) => Refusal::BadSubject(e.to_string()),
        IssueError::Refused(reason) => Refusal::StateChanged(reason),
        e @ (IssueError::Store(StoreError::Unavailable(_)) | IssueError::CaUnavailable(_)) => {
            tracing::error!(error = %e, "issuance unavailable");
            Refusal::IssuerUnavailable
        }
        other => {
            tracing::error!(error = %other, "issuance failed");
            Refusal::IssuanceFailed
        }
    }
}

/// Lookups read together at most; a batch of 64 is one short indexed statement.
const LOOKUP_BATCH: usize = 64;
/// Lookup statements in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 1;

/// The registry port over our store. Station requests read through one batched
/// lookup, so requests waiting at the same moment share one statement.
pub struct StoreRegistry {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    key: Arc<CredentialKey>,
    lookups: Batcher<EnrollmentLookup, Result<EnrollmentContext, StoreError>>,
}

impl StoreRegistry {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, key: Arc<CredentialKey>) -> Self {
        let reader = store.clone();
        let lookups = Batcher::spawn(LOOKUP_BATCH, LOOKUPS_IN_FLIGHT, move |batch: Vec<EnrollmentLookup>| {
            let store = reader.clone();
            async move { crate::store::answer_each(batch.len(), store.enrollment_contexts(&batch).await) }
        });
        Self { store, config, key, lookups }
    }

    fn known(&self, r: CertRecord) -> KnownCertificate {
        known(&self.config, r)
    }
}

#[async_trait::async_trait]
impl ra::Registry for StoreRegistry {
    async fn lookup(&self, lookup: Lookup) -> Result<Context, Refusal> {
        let lookup = EnrollmentLookup {
            client_fingerprint: lookup.client_fingerprint,
            station: lookup.station,
            device_id: lookup.device_id,
            earlier: lookup.earlier,
        };
        let found = match self.lookups.call(lookup).await {
            Ok(found) => found.map_err(store_refusal)?,
            Err(stopped) => return Err(store_refusal(StoreError::Unavailable(stopped.to_string()))),
        };
        Ok(Context {
            client: found.client.map(|c| self.known(c)),
            station: found.station,
            device: found.device,
            earlier: found.earlier.map(|c| self.known(c)),
        })
    }

    /// One HMAC on this thread whether or not the station exists or has a secret
    /// (`crate::credentials`): an unknown station looks like a wrong secret.
    async fn station_credential_valid(&self, name: &str, secret: &[u8]) -> Result<bool, Refusal> {
        let station = self.store.get_station(name).await.map_err(store_refusal)?;
        let stored = station.as_ref().and_then(|s| s.secret_hash.as_deref());
        let verdict = self.key.verify(stored, Subject::Station(name), secret);
        match verdict {
            Verdict::Valid | Verdict::Invalid => {}
            Verdict::Legacy => tracing::warn!(
                station = name,
                "station {name}'s HTTP secret has an Argon2id hash from an earlier version, which is no longer \
                 checked: the station authenticates with its certificate until its secret is made anew"
            ),
            Verdict::OtherKey => tracing::warn!(
                station = name,
                key = self.key.id(),
                "station {name}'s HTTP secret was hashed under another credential key: instances sharing a \
                 database must share {}",
                crate::credentials::KEY_FILE
            ),
            Verdict::Malformed => tracing::error!(station = name, "station {name} has a malformed stored secret hash"),
        }
        Ok(verdict == Verdict::Valid)
    }

    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KnownCertificate>, Refusal> {
        let found = self.store.certificate_by_fingerprint(fingerprint).await.map_err(store_refusal)?;
        Ok(found.map(|c| self.known(c)))
    }

    async fn certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<KnownCertificate>, Refusal> {
        let found = self.store.get_certificate(issuer, serial).await.map_err(store_refusal)?;
        Ok(found.map(|c| self.known(c)))
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, Refusal> {
        self.store.get_device(device_id).await.map_err(store_refusal)
    }

    async fn newest_issuance(&self, device_id: &str) -> Result<Option<i64>, Refusal> {
        let newest = self.store.certificates_for_device(device_id).await.map_err(store_refusal)?.into_iter().next();
        Ok(newest.map(|c| c.not_before + crate::profile::BACKDATE.as_secs() as i64))
    }

    async fn rotations(&self, device: &DeviceRecord) -> Result<Vec<ra::Rotation>, Refusal> {
        let found = self
            .store
            .device_rotations(&device.device_id, &device.batch, &device.model)
            .await
            .map_err(store_refusal)?;
        Ok(found.into_iter().map(|r| crate::rotation::window_rotation(&r)).collect())
    }

    async fn approval(&self, request_id: &str) -> Result<Option<ApprovalState>, Refusal> {
        let found = self.store.get_enrollment_request(request_id).await.map_err(store_refusal)?;
        Ok(found.map(approval_state))
    }

    async fn submit_for_approval(&self, request: &ApprovalRequest) -> Result<ApprovalState, Refusal> {
        let record = EnrollmentRequest {
            id: request.id.clone(),
            profile: request.profile.clone(),
            device_id: request.device_id.clone(),
            requester: request.requester.clone(),
            status: RequestStatus::Pending,
            decided_by: None,
            issued: None,
        };
        let audit = AuditEvent::success(request.requester.as_str(), "est.request", format!("request:{}", request.id))
            .with_details(serde_json::json!({ "device_id": request.device_id, "profile": request.profile }));
        let stored = self.store.submit_enrollment_request(&record, audit).await.map_err(store_refusal)?;
        // The id is the CSR's SHA-256: an approval is for one device under one profile,
        // and the same CSR at another label or for another device is not that request.
        if (stored.profile.as_str(), stored.device_id.as_str())
            != (request.profile.as_str(), request.device_id.as_str())
        {
            return Err(Refusal::Conflict(format!(
                "request {} was submitted for device '{}' under profile '{}'",
                stored.id, stored.device_id, stored.profile
            )));
        }
        Ok(approval_state(stored))
    }

    async fn redelivered(&self, actor: &str, c: &KnownCertificate) -> Result<(), Refusal> {
        let event = AuditEvent::success(
            actor,
            "certificate.redeliver",
            format!("certificate:{}/{}", c.issuer, hex::encode(&c.serial)),
        )
        .with_details(serde_json::json!({ "device_id": c.device_id, "fingerprint": c.fingerprint }));
        self.store.append_audit(&[event]).await.map_err(store_refusal)
    }
}

fn approval_state(r: EnrollmentRequest) -> ApprovalState {
    match (r.status, r.issued) {
        (RequestStatus::Pending, _) => ApprovalState::Pending,
        (RequestStatus::Approved, _) => ApprovalState::Approved,
        (RequestStatus::Rejected, _) => ApprovalState::Rejected,
        (RequestStatus::Issued, Some((issuer, serial))) => ApprovalState::Issued { issuer, serial },
        // Issued without a certificate cannot be stored; treat it as approved (the
        // storing transaction's precondition then refuses it).
        (RequestStatus::Issued, None) => ApprovalState::Approved,
    }
}

/// The issuer port over our CAs.
pub struct PkiIssuer(pub Arc<Pki>);

#[async_trait::async_trait]
impl ra::Issuer for PkiIssuer {
    type Issued = Issued;

    async fn issue(&self, plan: Plan) -> Result<Issued, Refusal> {
        let actor = plan.actor.clone();
        let issued = self.0.issue_plan(plan).await.map_err(issue_refusal)?;
        if issued.private_key.is_some() {
            // The certificate's own audit entry is already committed with it; this
            // records that its key was made here and handed out, not stored.
            let r = &issued.record;
            let event = AuditEvent::success(
                actor,
                "est.serverkeygen",
                format!("certificate:{}/{}", r.issuer, hex::encode(&r.serial)),
            )
            .with_details(
                serde_json::json!({ "device_id": r.device_id, "key": "ecdsa-p256, generated server-side, not stored" }),
            );
            self.0.store.append_audit(&[event]).await.map_err(store_refusal)?;
        }
        Ok(issued)
    }
}
