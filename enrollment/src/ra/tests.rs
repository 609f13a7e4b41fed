//! The pipeline's decisions against an in-memory registry: each test names the rule it
//! holds, and fails if that rule breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::csr::{check_csr, CheckedCsr};

const NOW: i64 = 1_800_000_000;

#[derive(Default)]
struct FakeRegistry {
    client: Option<KnownCertificate>,
    station: Option<StationRecord>,
    device: Option<DeviceRecord>,
    earlier: Option<KnownCertificate>,
    approvals: Mutex<BTreeMap<String, ApprovalState>>,
    certificates: Vec<KnownCertificate>,
    newest: Option<i64>,
    rotations: Vec<Rotation>,
    redelivered: Mutex<Vec<String>>,
    lookups: Mutex<Vec<Lookup>>,
}

#[async_trait]
impl Registry for FakeRegistry {
    async fn lookup(&self, lookup: Lookup) -> Result<Context, Refusal> {
        self.lookups.lock().unwrap().push(lookup.clone());
        let earlier = self.earlier.clone().filter(|_| lookup.earlier.is_some());
        Ok(Context { client: self.client.clone(), station: self.station.clone(), device: self.device.clone(), earlier })
    }
    async fn station_credential_valid(&self, station: &str, secret: &[u8]) -> Result<bool, Refusal> {
        Ok(station == "line-1" && secret == b"right")
    }
    async fn certificate_by_fingerprint(&self, fp: &str) -> Result<Option<KnownCertificate>, Refusal> {
        Ok(self.client.clone().filter(|c| c.fingerprint == fp))
    }
    async fn certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<KnownCertificate>, Refusal> {
        Ok(self.certificates.iter().find(|c| c.issuer == issuer && c.serial == serial).cloned())
    }
    async fn device(&self, _id: &str) -> Result<Option<DeviceRecord>, Refusal> {
        Ok(self.device.clone())
    }
    async fn newest_issuance(&self, _id: &str) -> Result<Option<i64>, Refusal> {
        Ok(self.newest)
    }
    async fn rotations(&self, _device: &DeviceRecord) -> Result<Vec<Rotation>, Refusal> {
        Ok(self.rotations.clone())
    }
    async fn approval(&self, id: &str) -> Result<Option<ApprovalState>, Refusal> {
        Ok(self.approvals.lock().unwrap().get(id).cloned())
    }
    async fn submit_for_approval(&self, r: &ApprovalRequest) -> Result<ApprovalState, Refusal> {
        Ok(self.approvals.lock().unwrap().entry(r.id.clone()).or_insert(ApprovalState::Pending).clone())
    }
    async fn redelivered(&self, actor: &str, c: &KnownCertificate) -> Result<(), Refusal> {
        self.redelivered.lock().unwrap().push(format!("{actor} {}", c.fingerprint));
        Ok(())
    }
}

struct NoIssuer;

#[async_trait]
impl Issuer for NoIssuer {
    type Issued = ();
    async fn issue(&self, _plan: Plan) -> Result<(), Refusal> {
        Err(Refusal::Internal)
    }
}

fn policy(approval: Approval) -> Policy {
    let device = ProfilePolicy {
        kind: ProfileKind::Device,
        key_types: vec![KeyType::EcdsaP256],
        approval,
        station_credentials: true,
        default_model: Some("generic".into()),
        renewal: RenewalPolicy { jitter_ppm: 0, ..RenewalPolicy::default() },
    };
    Policy {
        profiles: BTreeMap::from([("device".to_string(), device)]),
        models: BTreeMap::from([(
            "generic".to_string(),
            const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
        )]),
        renewal_min_interval_secs: 3600,
        allow_same_key_renewal: false,
        station_enrollments_per_minute: 0,
        retry_window_secs: 86_400,
        backdate_secs: 60,
    }
}

fn csr(cn: &str) -> CheckedCsr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    check_csr(params.serialize_request(&key).unwrap().der()).unwrap()
}

fn cert(issuer: &str, kind: ProfileKind, device_id: Option<&str>, serial: u8) -> KnownCertificate {
    KnownCertificate {
        issuer: issuer.into(),
        ca: issuer.into(),
        serial: vec![serial],
        profile: if kind == ProfileKind::Device { "device".into() } else { "station".into() },
        kind: Some(kind),
        device_id: device_id.map(str::to_string),
        not_before: NOW - 1000,
        not_after: NOW + 1000,
        state: CertState::Valid,
        fingerprint: format!("{serial:02x}").repeat(32),
        public_key_sha256: "00".repeat(32),
        der: vec![],
    }
}

fn registry(state: DeviceState) -> FakeRegistry {
    FakeRegistry {
        client: Some(cert("station", ProfileKind::Station, None, 1)),
        station: Some(StationRecord {
            name: "line-1".into(),
            enabled: true,
            models: vec!["*".into()],
            batches: vec!["B1".into()],
            secret_hash: None,
        }),
        device: Some(DeviceRecord {
            device_id: "SN-1".into(),
            model: "generic".into(),
            class: "default".into(),
            batch: "B1".into(),
            hardware_serial: None,
            state,
            reprovision: false,
        }),
        ..FakeRegistry::default()
    }
}

fn ra(approval: Approval, registry: FakeRegistry) -> Ra {
    RegistrationAuthority::new(policy(approval), registry, NoIssuer).with_clock(|| NOW)
}

type Ra = RegistrationAuthority<FakeRegistry, NoIssuer>;

fn station_certificate() -> StationCaller {
    StationCaller::Certificate { fingerprint: "01".repeat(32), common_name: Some("line-1".into()) }
}

/// Both stages, as the EST handlers run them: the claim, then the enrollment.
async fn enroll_with(
    ra: &Ra,
    caller: StationCaller,
    csr: Result<CheckedCsr, Refusal>,
    key: KeySource,
) -> Answer<Admission> {
    let claimed = ra.claim("device".into(), caller).await;
    match claimed.result {
        Ok(claim) => ra.enroll(StationRequest { claim, csr, key }, claimed.actor).await,
        Err(r) => Answer { actor: claimed.actor, result: Err(r) },
    }
}

async fn enroll(ra: &Ra, csr: CheckedCsr, key: KeySource) -> Answer<Admission> {
    enroll_with(ra, station_certificate(), Ok(csr), key).await
}

/// A certificate delivered earlier for `csr` (its own key).
fn delivered_for(csr: &CheckedCsr, serial: u8) -> KnownCertificate {
    KnownCertificate {
        public_key_sha256: sha256_hex(&csr.public_key_der),
        ..cert("device", ProfileKind::Device, Some("SN-1"), serial)
    }
}

#[tokio::test]
async fn a_registered_device_gets_a_plan_that_activates_it() {
    let ra = ra(Approval::Automatic, registry(DeviceState::Expected));
    let csr = csr("SN-1");
    let answer = enroll(&ra, csr.clone(), KeySource::Request).await;
    assert_eq!(answer.actor, format!("station:line-1:{}", "01".repeat(8)));
    let Ok(Admission::Issue(plan)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(plan.key, PlannedKey::Request(csr.public_key_der.clone()));
    assert_eq!(
        plan.effect,
        Some(Effect::ActivateDevice { device_id: "SN-1".into(), allow_reprovision: false, approved_request: None })
    );
    assert_eq!(plan.delivery, Some(DeliveryKey { request_sha256: sha256_hex(&csr.der), station: "line-1".into() }));
    let lookup = ra.registry().lookups.lock().unwrap()[0].clone();
    assert_eq!(lookup.earlier.map(|e| e.since), Some(NOW - 86_400 - 60), "the retry window is looked up");
}

#[tokio::test]
async fn the_same_request_repeated_gets_the_stored_certificate_again() {
    let csr = csr("SN-1");
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(delivered_for(&csr, 7));
    let ra = ra(Approval::Automatic, reg);
    let answer = enroll(&ra, csr, KeySource::Request).await;
    let Ok(Admission::Redeliver(c)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(c.serial, vec![7]);
    assert_eq!(ra.registry().redelivered.lock().unwrap().len(), 1, "a re-delivery is audited");
}

#[tokio::test]
async fn a_different_key_for_an_active_device_is_still_refused() {
    // No earlier delivery matches this CSR: the device is active, its batch does not
    // allow re-provisioning.
    let ra = ra(Approval::Automatic, registry(DeviceState::Active));
    let answer = enroll(&ra, csr("SN-1"), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
}

#[tokio::test]
async fn an_earlier_certificate_no_longer_valid_is_not_sent_again() {
    let mut reg = registry(DeviceState::Active);
    let mut revoked = cert("device", ProfileKind::Device, Some("SN-1"), 7);
    revoked.state = CertState::Revoked;
    reg.earlier = Some(revoked);
    let ra = ra(Approval::Automatic, reg);
    let answer = enroll(&ra, csr("SN-1"), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
}

#[tokio::test]
async fn a_repeated_serverkeygen_replaces_the_lost_key() {
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(cert("device", ProfileKind::Device, Some("SN-1"), 7));
    let ra = ra(Approval::Automatic, reg);
    let answer = enroll(&ra, csr("SN-1"), KeySource::Server).await;
    let Ok(Admission::Issue(plan)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(plan.key, PlannedKey::Generate(KeyType::EcdsaP256));
    assert_eq!(plan.effect, Some(Effect::Supersede { issuer: "device".into(), serial: vec![7], revoke: false }));
}

#[tokio::test]
async fn manual_approval_gates_serverkeygen_as_it_gates_simpleenroll() {
    for key in [KeySource::Request, KeySource::Server] {
        let ra = ra(Approval::Manual, registry(DeviceState::Expected));
        let csr = csr("SN-1");
        let answer = enroll(&ra, csr.clone(), key).await;
        assert_eq!(answer.result, Ok(Admission::Pending { request_id: sha256_hex(&csr.der) }), "{key:?}");
        // Approved: the plan marks the request issued in the storing transaction.
        ra.registry().approvals.lock().unwrap().insert(sha256_hex(&csr.der), ApprovalState::Approved);
        let Ok(Admission::Issue(plan)) = enroll(&ra, csr.clone(), key).await.result else {
            panic!("approved request not planned")
        };
        let Some(Effect::ActivateDevice { approved_request, .. }) = plan.effect else { panic!("{:?}", plan.effect) };
        assert_eq!(approved_request, Some(sha256_hex(&csr.der)));
    }
}

#[tokio::test]
async fn a_rejected_request_stays_rejected() {
    let ra = ra(Approval::Manual, registry(DeviceState::Expected));
    let csr = csr("SN-1");
    ra.registry().approvals.lock().unwrap().insert(sha256_hex(&csr.der), ApprovalState::Rejected);
    let answer = enroll(&ra, csr.clone(), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::Rejected(sha256_hex(&csr.der))));
}

#[tokio::test]
async fn an_issued_approval_is_answered_with_its_certificate_outside_the_window() {
    let csr = csr("SN-1");
    let mut reg = registry(DeviceState::Active);
    reg.certificates.push(delivered_for(&csr, 9));
    let ra = ra(Approval::Manual, reg);
    ra.registry()
        .approvals
        .lock()
        .unwrap()
        .insert(sha256_hex(&csr.der), ApprovalState::Issued { issuer: "device".into(), serial: vec![9] });
    let answer = enroll(&ra, csr, KeySource::Request).await;
    let Ok(Admission::Redeliver(c)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(c.serial, vec![9]);
}

#[tokio::test]
async fn stations_authenticate_in_order() {
    let credential =
        |secret: &[u8]| StationCaller::Credential { station: "line-1".into(), secret: secret.to_vec().into() };
    // Credentials only where the profile allows them.
    let mut p = policy(Approval::Automatic);
    p.profiles.get_mut("device").unwrap().station_credentials = false;
    let strict = RegistrationAuthority::new(p, registry(DeviceState::Expected), NoIssuer).with_clock(|| NOW);
    let answer = enroll_with(&strict, credential(b"right"), Ok(csr("SN-1")), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::CertificateRequired));

    let ra = ra(Approval::Automatic, registry(DeviceState::Expected));
    let answer = enroll_with(&ra, credential(b"wrong"), Ok(csr("SN-1")), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::BadCredentials("station credentials are not valid")));
    let answer = enroll_with(&ra, credential(b"right"), Ok(csr("SN-1")), KeySource::Request).await;
    assert_eq!(answer.actor, "station:line-1:credential");
    assert!(matches!(answer.result, Ok(Admission::Issue(_))), "{:?}", answer.result);

    // The claim comes before the body: an anonymous caller is refused by the claim
    // alone; a bad body is reported only after the station is known.
    assert_eq!(
        ra.claim("device".into(), StationCaller::Anonymous).await.result.err(),
        Some(Refusal::CredentialsRequired)
    );
    let answer = enroll_with(&ra, station_certificate(), Err(Refusal::UnreadableBody), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::UnreadableBody));
    assert_eq!(require_certificate(None), Err(Refusal::CertificateRequired));
}

#[tokio::test]
async fn stations_are_held_to_their_scope_and_devices_to_their_state() {
    let mut reg = registry(DeviceState::Expected);
    reg.station.as_mut().unwrap().batches = vec!["B2".into()];
    let answer = enroll(&ra(Approval::Automatic, reg), csr("SN-1"), KeySource::Request).await;
    assert_eq!(
        answer.result,
        Err(Refusal::OutOfScope { station: "line-1".into(), model: "generic".into(), batch: "B1".into() })
    );
    let answer =
        enroll(&ra(Approval::Automatic, registry(DeviceState::Revoked)), csr("SN-1"), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::DeviceNotEnrollable { id: "SN-1".into(), state: DeviceState::Revoked }));
    let answer =
        enroll(&ra(Approval::Automatic, registry(DeviceState::Expected)), csr("SN-2"), KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::UnknownDevice("SN-2".into())));
}

#[tokio::test]
async fn a_repeat_is_answered_only_with_a_matching_certificate() {
    let csr = csr("SN-1");
    // A serverkeygen certificate (a key made here) is not what simpleenroll hands out,
    // nor is another profile's, nor a revoked one; and a station out of the device's
    // scope gets nothing.
    let mut keygen = cert("device", ProfileKind::Device, Some("SN-1"), 7);
    keygen.public_key_sha256 = "ab".repeat(32);
    let mut other_profile = delivered_for(&csr, 8);
    other_profile.profile = "gateway".into();
    let mut revoked = delivered_for(&csr, 9);
    revoked.state = CertState::Revoked;
    for earlier in [keygen, other_profile, revoked] {
        let mut reg = registry(DeviceState::Active);
        reg.earlier = Some(earlier.clone());
        let answer = enroll(&ra(Approval::Automatic, reg), csr.clone(), KeySource::Request).await;
        assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())), "{earlier:?}");
    }
    // The CSR's own key is not what serverkeygen hands out: no replacement for it.
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(delivered_for(&csr, 10));
    let answer = enroll(&ra(Approval::Automatic, reg), csr.clone(), KeySource::Server).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(delivered_for(&csr, 11));
    reg.station.as_mut().unwrap().batches = vec!["B2".into()];
    let answer = enroll(&ra(Approval::Automatic, reg), csr, KeySource::Request).await;
    assert!(matches!(answer.result, Err(Refusal::OutOfScope { .. })), "{:?}", answer.result);
}

#[tokio::test]
async fn an_issued_approval_is_never_issued_again_nor_a_revoked_one_sent() {
    let csr = csr("SN-1");
    let issued = ApprovalState::Issued { issuer: "device".into(), serial: vec![9] };
    // serverkeygen of an approved-and-issued request: no second certificate without a
    // new approval (the delivery key, bound to the station and window, is the only way).
    let mut reg = registry(DeviceState::Active);
    reg.certificates.push(delivered_for(&csr, 9));
    let ra1 = ra(Approval::Manual, reg);
    ra1.registry().approvals.lock().unwrap().insert(sha256_hex(&csr.der), issued.clone());
    let answer = enroll(&ra1, csr.clone(), KeySource::Server).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
    // Its certificate revoked since: not sent again.
    let mut reg = registry(DeviceState::Active);
    let mut revoked = delivered_for(&csr, 9);
    revoked.state = CertState::Revoked;
    reg.certificates.push(revoked);
    let ra2 = ra(Approval::Manual, reg);
    ra2.registry().approvals.lock().unwrap().insert(sha256_hex(&csr.der), issued);
    let answer = enroll(&ra2, csr, KeySource::Request).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
}

#[tokio::test]
async fn a_renewal_keeps_the_identity_and_supersedes_the_current_certificate() {
    let mut reg = registry(DeviceState::Active);
    let mut current = cert("device", ProfileKind::Device, Some("SN-1"), 5);
    // The renewal identity rule compares with the current certificate's DER.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "SN-1");
    current.der = params.self_signed(&key).unwrap().der().to_vec();
    reg.client = Some(current.clone());
    reg.newest = Some(NOW - 3599);
    let ra = ra(Approval::Automatic, reg);
    let request = || RenewalRequest {
        profile: "device".into(),
        client_fingerprint: current.fingerprint.clone(),
        csr: Ok(csr("SN-1")),
    };
    let answer = ra.renew(request()).await;
    assert_eq!(
        answer.result,
        Err(Refusal::RenewalRateLimited { device: "SN-1".into(), interval: 3600, retry_after: 1 }),
        "one certificate per device per interval"
    );
    let mut reg = registry(DeviceState::Active);
    reg.client = Some(current.clone());
    let ra = RegistrationAuthority::new(policy(Approval::Automatic), reg, NoIssuer).with_clock(|| NOW);
    let answer = ra.renew(request()).await;
    let Ok(plan) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(plan.effect, Some(Effect::Supersede { issuer: "device".into(), serial: vec![5], revoke: false }));
    let other = RenewalRequest { csr: Ok(csr("SN-9")), ..request() };
    assert!(matches!(ra.renew(other).await.result, Err(Refusal::RenewalIdentity(_))));
    let unknown = RenewalRequest { client_fingerprint: "ff".repeat(32), ..request() };
    assert_eq!(ra.renew(unknown).await.result, Err(Refusal::ForeignCertificate("device".into())));
}

/// A device whose current certificate (serial 5) was issued at `NOW - 1000` and is
/// valid until `NOW + 1000`: its window (no jitter) is `NOW + 233 … NOW + 433`, and it
/// was last issued a certificate `NOW - 1000 + 60` (within the 3,600 s interval).
fn renewing_device() -> (FakeRegistry, KnownCertificate) {
    let mut reg = registry(DeviceState::Active);
    let mut current = cert("device", ProfileKind::Device, Some("SN-1"), 5);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "SN-1");
    current.der = params.self_signed(&key).unwrap().der().to_vec();
    reg.client = Some(current.clone());
    reg.newest = Some(NOW - 1000 + 60);
    (reg, current)
}

fn renewal_of(current: &KnownCertificate, csr: CheckedCsr) -> RenewalRequest {
    RenewalRequest { profile: "device".into(), client_fingerprint: current.fingerprint.clone(), csr: Ok(csr) }
}

#[tokio::test]
async fn a_renewal_inside_its_window_is_exempt_from_the_rate_limit_and_not_before() {
    static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(NOW);
    let (reg, current) = renewing_device();
    let ra = RegistrationAuthority::new(policy(Approval::Automatic), reg, NoIssuer)
        .with_clock(|| CLOCK.load(std::sync::atomic::Ordering::SeqCst));

    let info = ra.renewal_info("device".into(), current.fingerprint.clone()).await.result.unwrap();
    assert_eq!((info.window.start, info.window.end), (NOW + 233, NOW + 433));
    assert_eq!(info.window.cause, WindowCause::Schedule);
    assert_eq!(info.recheck_secs, 86_400);

    // Before the window: the rate limit holds, and names the wait until it opens.
    let early = ra.renew(renewal_of(&current, csr("SN-1"))).await.result;
    assert_eq!(early, Err(Refusal::RenewalRateLimited { device: "SN-1".into(), interval: 3600, retry_after: 233 }));
    // Inside it: renewed, though the interval has not passed.
    CLOCK.store(NOW + 233, std::sync::atomic::Ordering::SeqCst);
    let inside = ra.renew(renewal_of(&current, csr("SN-1"))).await;
    assert!(inside.result.is_ok(), "{:?}", inside.result);
}

#[tokio::test]
async fn a_rotation_opens_the_window_now_and_a_key_exposure_one_refuses_the_same_key() {
    let (mut reg, current) = renewing_device();
    reg.rotations = vec![Rotation { id: 7, opened_at: NOW - 10, deadline: NOW + 86_400, new_key_required: true }];
    let mut policy = policy(Approval::Automatic);
    policy.allow_same_key_renewal = true;
    let ra = RegistrationAuthority::new(policy, reg, NoIssuer).with_clock(|| NOW);

    let info = ra.renewal_info("device".into(), current.fingerprint.clone()).await.result.unwrap();
    assert_eq!((info.window.start, info.window.end), (NOW - 10, NOW + 433), "now … no later than scheduled");
    assert_eq!(info.window.rotation().map(|r| r.id), Some(7));

    // Same key: refused by the rotation even where same-key renewal is allowed.
    let mut same = csr("SN-1");
    same.public_key_der = vec![1, 2, 3];
    let mut with_same_key = renewal_of(&current, same);
    let mut current_same = current.clone();
    current_same.public_key_sha256 = sha256_hex(&[1, 2, 3]);
    let (mut reg, _) = renewing_device();
    reg.client = Some(current_same);
    reg.rotations = vec![Rotation { id: 7, opened_at: NOW - 10, deadline: NOW + 86_400, new_key_required: true }];
    let ra_same = RegistrationAuthority::new(policy_with_same_key(), reg, NoIssuer).with_clock(|| NOW);
    assert_eq!(ra_same.renew(with_same_key).await.result, Err(Refusal::SameKeyInRotation(7)));

    // Without key exposure the same key is what the policy says (allowed here).
    let (mut reg, _) = renewing_device();
    let mut current_same = current.clone();
    current_same.public_key_sha256 = sha256_hex(&[1, 2, 3]);
    reg.client = Some(current_same);
    reg.rotations = vec![Rotation { id: 8, opened_at: NOW - 10, deadline: NOW + 86_400, new_key_required: false }];
    let ra_plain = RegistrationAuthority::new(policy_with_same_key(), reg, NoIssuer).with_clock(|| NOW);
    let mut same = csr("SN-1");
    same.public_key_der = vec![1, 2, 3];
    with_same_key = renewal_of(&current, same);
    let renewed = ra_plain.renew(with_same_key).await.result;
    let Ok(plan) = renewed else { panic!("inside the rotation's window, exempt from the rate limit: {renewed:?}") };
    // Not after a key exposure: the replaced certificate is only superseded.
    assert!(matches!(plan.effect, Some(Effect::Supersede { revoke: false, .. })), "{:?}", plan.effect);

    // A new key inside the key-exposure rotation: renewed, rate limit or not, and the
    // replaced certificate (whose key others may hold) is revoked with it.
    let renewed = ra.renew(renewal_of(&current, csr("SN-1"))).await.result;
    let Ok(plan) = renewed else { panic!("{renewed:?}") };
    assert!(matches!(plan.effect, Some(Effect::Supersede { revoke: true, .. })), "{:?}", plan.effect);
}

#[tokio::test]
async fn a_certificate_issued_after_the_rotation_opened_is_its_replacement() {
    let (mut reg, current) = renewing_device();
    reg.rotations = vec![Rotation { id: 3, opened_at: NOW - 2000, deadline: NOW + 10, new_key_required: true }];
    let ra = ra(Approval::Automatic, reg);
    let info = ra.renewal_info("device".into(), current.fingerprint.clone()).await.result.unwrap();
    assert_eq!(info.window.cause, WindowCause::Schedule);
    assert!(matches!(
        ra.renew(renewal_of(&current, csr("SN-1"))).await.result,
        Err(Refusal::RenewalRateLimited { .. })
    ));
}

fn policy_with_same_key() -> Policy {
    Policy { allow_same_key_renewal: true, ..policy(Approval::Automatic) }
}

#[test]
fn operators_get_the_same_key_rules() {
    let p = policy(Approval::Automatic);
    let request = |profile: &str, model: Option<&str>| OperatorRequest {
        profile: profile.into(),
        csr: csr("SN-1"),
        device_id: None,
        model: model.map(str::to_string),
        actor: "cli:op".into(),
        registered: None,
    };
    let plan = plan_for_operator(&p, request("device", None)).unwrap();
    assert!(matches!(plan.subject, Subject::Device { ref id, .. } if id == "SN-1"));
    assert_eq!(plan_for_operator(&p, request("nope", None)), Err(Refusal::UnknownProfile("nope".into())));
    assert_eq!(plan_for_operator(&p, request("device", Some("x"))), Err(Refusal::UnknownModelName("x".into())));
    // A registered device that was revoked gets nothing more, even from an operator.
    let mut revoked = request("device", None);
    revoked.registered = registry(DeviceState::Revoked).device;
    assert_eq!(
        plan_for_operator(&p, revoked),
        Err(Refusal::DeviceNotEnrollable { id: "SN-1".into(), state: DeviceState::Revoked })
    );
    let mut active = request("device", None);
    active.registered = registry(DeviceState::Active).device;
    assert!(plan_for_operator(&p, active).is_ok(), "an operator may issue for an active device");
    let mut narrow = p.clone();
    narrow.profiles.get_mut("device").unwrap().key_types = vec![KeyType::Ed25519];
    assert_eq!(
        plan_for_operator(&narrow, request("device", None)),
        Err(Refusal::Policy("key type ecdsa-p256 is not allowed by profile 'device'".into()))
    );
}

#[test]
fn every_refusal_has_one_status() {
    assert_eq!(Refusal::CertificateRequired.status(), 401);
    assert_eq!(Refusal::AlreadyEnrolled("x".into()).status(), 403);
    assert_eq!(Refusal::Csr(crate::CsrError::TooLarge).status(), 413);
    assert_eq!(Refusal::Body(crate::EstError::WrongContentType { got: "x".into(), expected: "y" }).status(), 415);
    assert_eq!(Refusal::StationRateLimited { limit: 1, retry_after: 5 }.retry_after(), Some(5));
    assert_eq!(Refusal::StateChanged("x".into()).status(), 409);
    assert_eq!(Refusal::Unavailable.status(), 503);
    assert_eq!(Refusal::IssuerUnavailable.retry_after(), Some(super::refusal::UNAVAILABLE_RETRY_AFTER_SECS));
    assert_eq!(Refusal::IssuanceFailed.retry_after(), None, "a 500 says nothing of when");
}
