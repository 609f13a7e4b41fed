//! The enrollment pipeline: *authenticate* the caller → *authorize* against the
//! registry → *approval gate* → *rate limits* → a typed [`Plan`]. Every EST path that
//! issues (simpleenroll, serverkeygen, simplereenroll, the manual-approval retry) is
//! one of the two entry points here; the handlers only decode the request and map the
//! answer.
//!
//! Retries are safe (invariant 7): a certificate issued to a station is stored under
//! the SHA-256 of the CSR and the station's name, and the same station sending the
//! same CSR within the retry window gets that certificate again — looked up, never
//! re-signed — so a lost answer never strands a device.

use zeroize::Zeroizing;

use crate::csr::CheckedCsr;
use crate::est::check_renewal_identity;
use crate::ra::authenticate::{check_certificate, short, StationWindows};
use crate::ra::{
    is_valid_device_id, Admission, Approval, ApprovalRequest, ApprovalState, CertState, DeliveryKey, DeviceRecord,
    DeviceState, EarlierDelivery, Effect, Issuer, KeyType, KnownCertificate, Lookup, Plan, PlannedKey, Policy,
    ProfileKind, ProfilePolicy, Refusal, Registry, StationRecord, Subject, Window,
};

/// Who a station request says it is, before the registry confirms it.
pub enum StationCaller {
    /// A TLS client certificate: its SHA-256 (lower-case hex) and its CN, if any.
    Certificate { fingerprint: String, common_name: Option<String> },
    /// An HTTP credential (`Authorization`), not yet verified.
    Credential { station: String, secret: Zeroizing<Vec<u8>> },
    /// An `Authorization` header that could not be parsed.
    MalformedCredential(&'static str),
    /// Neither.
    Anonymous,
}

impl std::fmt::Debug for StationCaller {
    // The secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StationCaller::Certificate { fingerprint, common_name } => {
                f.debug_struct("Certificate").field("fingerprint", fingerprint).field("cn", common_name).finish()
            }
            StationCaller::Credential { station, .. } => {
                f.debug_struct("Credential").field("station", station).finish()
            }
            StationCaller::MalformedCredential(why) => f.debug_tuple("MalformedCredential").field(why).finish(),
            StationCaller::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Where the device's key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The CSR's key (simpleenroll).
    Request,
    /// Generated here and returned once (serverkeygen; the CSR carries the identity).
    Server,
}

/// A station's enrollment request, decoded: who it claims to be (already accepted by
/// [`RegistrationAuthority::claim`]), its CSR, and where the key comes from.
pub struct StationRequest {
    pub claim: StationClaim,
    /// The checked CSR, or why the body was refused (reported only once the station is
    /// authenticated, so an unauthenticated caller learns nothing from it).
    pub csr: Result<CheckedCsr, Refusal>,
    pub key: KeySource,
}

impl std::fmt::Debug for StationRequest {
    // The CSR is not printed (DESIGN §7: never log full CSRs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationRequest").field("claim", &self.claim).field("key", &self.key).finish_non_exhaustive()
    }
}

/// What a station request claims, accepted by the first, cheap part of
/// authentication: a client certificate was presented, or the station's credential is
/// valid where the profile accepts credentials. Made only by
/// [`RegistrationAuthority::claim`]; the registry confirms the rest.
#[derive(Debug)]
pub struct StationClaim {
    profile: String,
    claim: Claim,
}

/// A device's renewal request, decoded.
#[derive(Debug)]
pub struct RenewalRequest {
    pub profile: String,
    /// SHA-256 of the TLS client certificate (see [`require_certificate`]).
    pub client_fingerprint: String,
    pub csr: Result<CheckedCsr, Refusal>,
}

/// The first, cheap part of a device's authentication: it presented a client
/// certificate (its SHA-256). Checked before the body is read.
pub fn require_certificate(client_fingerprint: Option<String>) -> Result<String, Refusal> {
    client_fingerprint.ok_or(Refusal::CertificateRequired)
}

/// A pipeline's verdict and who the caller turned out to be (for the audit entry of
/// a refusal as much as of a success).
#[derive(Debug)]
pub struct Answer<T> {
    pub actor: String,
    pub result: Result<T, Refusal>,
}

/// The registration authority: the policy, the registry and the issuer.
pub struct RegistrationAuthority<R, I> {
    policy: Policy,
    registry: R,
    issuer: I,
    windows: StationWindows,
    clock: fn() -> i64,
}

impl<R, I> std::fmt::Debug for RegistrationAuthority<R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationAuthority").field("profiles", &self.policy.profiles.keys()).finish()
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// SHA-256, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

impl<R: Registry, I: Issuer> RegistrationAuthority<R, I> {
    pub fn new(policy: Policy, registry: R, issuer: I) -> Self {
        Self { policy, registry, issuer, windows: StationWindows::default(), clock: unix_now }
    }

    /// Replaces the clock (unix seconds), for tests.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// Applies a plan: the issuer signs, stores (with the audit entry and the plan's
    /// effect, in one transaction) and only then answers.
    pub async fn issue(&self, plan: Plan) -> Result<I::Issued, Refusal> {
        self.issuer.issue(plan).await
    }

    fn profile(&self, name: &str) -> Result<&ProfilePolicy, Refusal> {
        self.policy.profiles.get(name).ok_or_else(|| Refusal::UnknownEstProfile(name.to_string()))
    }

    /// The first stage of simpleenroll and serverkeygen, before the body is read: a
    /// client certificate was presented, or — where the profile accepts them — the
    /// station's credential is valid. Cheap, so an unauthenticated caller costs no body
    /// read and no CSR check.
    pub async fn claim(&self, profile: String, caller: StationCaller) -> Answer<StationClaim> {
        let mut actor = "unauthenticated".to_string();
        let result = self.claim_stage(profile, caller, &mut actor).await;
        Answer { actor, result }
    }

    async fn claim_stage(
        &self,
        profile_name: String,
        caller: StationCaller,
        actor: &mut String,
    ) -> Result<StationClaim, Refusal> {
        let profile = self.profile(&profile_name)?;
        let claim = match caller {
            StationCaller::Certificate { fingerprint, common_name } => Claim::Certificate { fingerprint, common_name },
            _ if !profile.station_credentials => return Err(Refusal::CertificateRequired),
            StationCaller::Credential { station, secret } => {
                if !self.registry.station_credential_valid(&station, &secret).await? {
                    return Err(Refusal::BadCredentials("station credentials are not valid"));
                }
                *actor = format!("station:{station}:credential");
                Claim::Credential(station)
            }
            StationCaller::MalformedCredential(why) => return Err(Refusal::BadCredentials(why)),
            StationCaller::Anonymous => return Err(Refusal::CredentialsRequired),
        };
        Ok(StationClaim { profile: profile_name, claim })
    }

    /// simpleenroll and serverkeygen: a provisioning station enrolls a registered device.
    /// `actor` is the claim's answer's actor.
    pub async fn enroll(&self, request: StationRequest, actor: String) -> Answer<Admission> {
        let mut actor = actor;
        let result = self.enroll_stages(request, &mut actor).await;
        Answer { actor, result }
    }

    async fn enroll_stages(&self, request: StationRequest, actor: &mut String) -> Result<Admission, Refusal> {
        let now = (self.clock)();
        let StationClaim { profile: profile_name, claim: claimed } = request.claim;
        let profile = self.profile(&profile_name)?;
        let csr = request.csr;
        let request_sha256 = csr.as_ref().ok().map(|c| sha256_hex(&c.der));
        let device_id = csr.as_ref().ok().and_then(|c| c.common_name.clone());
        let earlier = match (&request_sha256, claimed.station_name(), &device_id) {
            (Some(sha), Some(station), Some(device_id)) => Some(EarlierDelivery {
                device_id: device_id.clone(),
                request_sha256: sha.clone(),
                station: station.to_string(),
                since: now
                    .saturating_sub(self.policy.retry_window_secs.saturating_add(self.policy.backdate_secs) as i64),
            }),
            _ => None,
        };
        let lookup = Lookup {
            client_fingerprint: claimed.fingerprint().map(str::to_string),
            station: claimed.station_name().map(str::to_string),
            device_id,
            earlier,
        };
        let mut ctx = self.registry.lookup(lookup).await?;
        let name = match claimed {
            Claim::Certificate { fingerprint, common_name } => {
                check_certificate(ctx.client.take(), "station", ProfileKind::Station, now)?;
                let name = common_name.ok_or(Refusal::StationWithoutName)?;
                *actor = format!("station:{name}:{}", short(&fingerprint));
                name
            }
            Claim::Credential(name) => name,
        };
        let station = ctx.station.take().ok_or_else(|| Refusal::UnknownStation(name.clone()))?;
        if !station.enabled {
            return Err(Refusal::StationDisabled(name));
        }

        // Rate limit per station, then the request itself and the key rules.
        self.windows.admit(&station.name, self.policy.station_enrollments_per_minute, now)?;
        let csr = csr?;
        profile.check_request(&profile_name, &csr)?;
        let request_sha256 = request_sha256.unwrap_or_else(|| sha256_hex(&csr.der));

        // A repeat of a request already answered (the station lost the answer): the
        // certificate delivered for it — still valid, for this device and profile, and
        // of the kind this endpoint hands out (the CSR's key for simpleenroll, a key
        // made here for serverkeygen).
        let matches = |c: &KnownCertificate| {
            c.state == CertState::Valid
                && c.device_id == csr.common_name
                && c.profile == profile_name
                && (c.public_key_sha256 == sha256_hex(&csr.public_key_der)) == (request.key == KeySource::Request)
        };
        let mut earlier = ctx.earlier.take().filter(&matches);
        if earlier.is_none() && profile.approval == Approval::Manual && request.key == KeySource::Request {
            // Approved and issued, delivered before the delivery key was recorded, or
            // to another station of the device's scope: the same certificate again.
            if let Some(ApprovalState::Issued { issuer, serial }) = self.registry.approval(&request_sha256).await? {
                earlier = self.registry.certificate(&issuer, &serial).await?.filter(&matches);
            }
        }

        // Authorize against the registry (an active device only for a repeat).
        let device = self.enrollable_device(&station, ctx.device.take(), &csr, earlier.is_some())?;
        let model_oid = self.model_oid(&device)?;
        let replaces = match (earlier, request.key) {
            (Some(c), KeySource::Request) => {
                self.registry.redelivered(actor, &c).await?;
                return Ok(Admission::Redeliver(c));
            }
            // A key made here cannot be sent again: a new one replaces the lost one.
            (Some(c), KeySource::Server) => Some(c),
            (None, _) => None,
        };

        // The approval gate.
        let approved_request = match (profile.approval, &replaces) {
            (Approval::Manual, None) => {
                let submitted = ApprovalRequest {
                    id: request_sha256.clone(),
                    profile: profile_name.clone(),
                    device_id: device.device_id.clone(),
                    requester: actor.clone(),
                };
                match self.registry.submit_for_approval(&submitted).await? {
                    ApprovalState::Pending => return Ok(Admission::Pending { request_id: request_sha256 }),
                    ApprovalState::Rejected => return Err(Refusal::Rejected(request_sha256)),
                    ApprovalState::Approved | ApprovalState::Issued { .. } => Some(request_sha256.clone()),
                }
            }
            _ => None,
        };

        let effect = match replaces {
            Some(c) => Effect::Supersede { issuer: c.issuer, serial: c.serial, revoke: false },
            None => Effect::ActivateDevice {
                device_id: device.device_id.clone(),
                allow_reprovision: device.reprovision,
                approved_request,
            },
        };
        let key = match request.key {
            KeySource::Request => PlannedKey::Request(csr.public_key_der),
            KeySource::Server => PlannedKey::Generate(KeyType::EcdsaP256),
        };
        Ok(Admission::Issue(Plan {
            profile: profile_name,
            subject: Subject::Device { id: device.device_id, model_oid },
            key,
            effect: Some(effect),
            delivery: Some(DeliveryKey { request_sha256, station: station.name }),
            actor: actor.clone(),
        }))
    }

    /// The registered device a station may enroll now: the one the CSR names, in the
    /// station's scope, not yet enrolled (or re-provisionable, or — `reissue` — active
    /// and being given a replacement for a certificate whose answer was lost).
    fn enrollable_device(
        &self,
        station: &StationRecord,
        device: Option<DeviceRecord>,
        csr: &CheckedCsr,
        reissue: bool,
    ) -> Result<DeviceRecord, Refusal> {
        let id = csr.common_name.clone().ok_or(Refusal::NoDeviceId)?;
        if !is_valid_device_id(&id) {
            return Err(Refusal::InvalidDeviceId(id));
        }
        let device = device.filter(|d| d.device_id == id).ok_or_else(|| Refusal::UnknownDevice(id.clone()))?;
        if !station.may_enroll(&device) {
            return Err(Refusal::OutOfScope {
                station: station.name.clone(),
                model: device.model.clone(),
                batch: device.batch.clone(),
            });
        }
        match device.state {
            DeviceState::Expected => Ok(device),
            DeviceState::Active if device.reprovision || reissue => Ok(device),
            DeviceState::Active => Err(Refusal::AlreadyEnrolled(id)),
            state @ (DeviceState::Revoked | DeviceState::Decommissioned) => {
                Err(Refusal::DeviceNotEnrollable { id, state })
            }
        }
    }

    fn model_oid(&self, device: &DeviceRecord) -> Result<const_oid::ObjectIdentifier, Refusal> {
        self.policy.models.get(&device.model).copied().ok_or_else(|| Refusal::UnknownModel(device.model.clone()))
    }

    /// simplereenroll: a device renews its own identity with its current certificate.
    pub async fn renew(&self, request: RenewalRequest) -> Answer<Plan> {
        let mut actor = "unauthenticated".to_string();
        let result = self.renew_stages(request, &mut actor).await;
        Answer { actor, result }
    }

    /// The renewal window of the device's current certificate (the renewal-info
    /// endpoint, draft-ietf-lamps-est-renewal-info): authenticated as a renewal is,
    /// by the certificate itself, which must still be `valid`.
    pub async fn renewal_info(&self, profile: String, client_fingerprint: String) -> Answer<RenewalInfo> {
        let mut actor = "unauthenticated".to_string();
        let result = async {
            let now = (self.clock)();
            self.profile(&profile)?;
            let (current, device) = self.current_identity(&client_fingerprint, now, &mut actor).await?;
            let window = self.window(&current, &device).await?;
            let recheck_secs = self.renewal_policy(&current.profile)?.recheck_secs;
            Ok(RenewalInfo { certificate: current, window, recheck_secs })
        }
        .await;
        Answer { actor, result }
    }

    /// Authenticates a device by its current certificate, as our records have it now,
    /// and finds it still an active registered device.
    async fn current_identity(
        &self,
        client_fingerprint: &str,
        now: i64,
        actor: &mut String,
    ) -> Result<(KnownCertificate, DeviceRecord), Refusal> {
        let found = self.registry.certificate_by_fingerprint(client_fingerprint).await?;
        let current = check_certificate(found, "device", ProfileKind::Device, now)?;
        let id = current.device_id.clone().ok_or_else(|| Refusal::NotAnIdentity("device".into()))?;
        *actor = format!("device:{id}:{}", short(&current.fingerprint));
        let device = self.registry.device(&id).await?.ok_or_else(|| Refusal::UnregisteredDevice(id.clone()))?;
        if device.state != DeviceState::Active {
            return Err(Refusal::DeviceNotEnrollable { id, state: device.state });
        }
        Ok((current, device))
    }

    /// The renewal schedule of the profile a certificate was issued under.
    fn renewal_policy(&self, profile: &str) -> Result<&crate::ra::RenewalPolicy, Refusal> {
        let p = self.policy.profiles.get(profile).ok_or_else(|| Refusal::ProfileGone(profile.to_string()))?;
        Ok(&p.renewal)
    }

    /// The recommended renewal window of `current`: its profile's schedule, moved by
    /// the rotations covering its device.
    async fn window(&self, current: &KnownCertificate, device: &DeviceRecord) -> Result<Window, Refusal> {
        let policy = self.renewal_policy(&current.profile)?;
        let rotations = self.registry.rotations(device).await?;
        let issued_at = current.not_before.saturating_add(self.policy.backdate_secs as i64);
        Ok(crate::ra::window(policy, current, issued_at, &rotations))
    }

    async fn renew_stages(&self, request: RenewalRequest, actor: &mut String) -> Result<Plan, Refusal> {
        let now = (self.clock)();
        self.profile(&request.profile)?;
        // Authenticate: the current certificate, as our records have it now.
        let (current, device) = self.current_identity(&request.client_fingerprint, now, actor).await?;
        let id = device.device_id.clone();

        // Authorize: still an active device, the same identity, a new key (by
        // default, and always inside a key-exposure rotation), and what the
        // certificate's own profile allows.
        let csr = request.csr?;
        check_renewal_identity(&csr.der, &current.der)?;
        let window = self.window(&current, &device).await?;
        let same_key = sha256_hex(&csr.public_key_der) == current.public_key_sha256;
        if same_key {
            if let Some(r) = window.rotation().filter(|r| r.new_key_required) {
                return Err(Refusal::SameKeyInRotation(r.id));
            }
            if !self.policy.allow_same_key_renewal {
                return Err(Refusal::SameKey);
            }
        }
        // Renewals use the profile the current certificate was issued under.
        let profile =
            self.policy.profiles.get(&current.profile).ok_or_else(|| Refusal::ProfileGone(current.profile.clone()))?;
        profile.check_request(&current.profile, &csr)?;

        // Rate limit: one certificate per device per interval, counted from the store
        // (so it holds across instances and restarts) — except inside the recommended
        // renewal window, which is when the device was told to renew. Before the
        // window, the wait named is until the window opens or the interval ends,
        // whichever comes first.
        let interval = self.policy.renewal_min_interval_secs;
        if interval > 0 && !window.open_at(now) {
            if let Some(issued_at) = self.registry.newest_issuance(&id).await? {
                let wait = issued_at + interval as i64 - now;
                if wait > 0 {
                    let retry_after = wait.min(window.start - now).max(1) as u64;
                    return Err(Refusal::RenewalRateLimited { device: id, interval, retry_after });
                }
            }
        }
        let model_oid = self.model_oid(&device)?;
        // After a suspected key exposure the replaced certificate must stop being
        // trusted at once, not at its notAfter: its key may be in other hands.
        let revoke = window.rotation().is_some_and(|r| r.new_key_required);
        Ok(Plan {
            profile: current.profile,
            subject: Subject::Device { id, model_oid },
            key: PlannedKey::Request(csr.public_key_der),
            effect: Some(Effect::Supersede { issuer: current.issuer, serial: current.serial, revoke }),
            delivery: None,
            actor: actor.clone(),
        })
    }
}

/// What the renewal-info endpoint answers: the certificate it is about, its window,
/// and when to ask again.
#[derive(Debug)]
pub struct RenewalInfo {
    pub certificate: KnownCertificate,
    pub window: Window,
    pub recheck_secs: u64,
}

/// What the caller claimed, before the lookup confirmed it.
#[derive(Debug)]
enum Claim {
    Certificate { fingerprint: String, common_name: Option<String> },
    Credential(String),
}

impl Claim {
    fn station_name(&self) -> Option<&str> {
        match self {
            Claim::Certificate { common_name, .. } => common_name.as_deref(),
            Claim::Credential(name) => Some(name),
        }
    }

    fn fingerprint(&self) -> Option<&str> {
        match self {
            Claim::Certificate { fingerprint, .. } => Some(fingerprint),
            Claim::Credential(_) => None,
        }
    }
}
