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

fn ra(approval: Approval, registry: FakeRegistry) -> RegistrationAuthority<FakeRegistry, NoIssuer> {
    RegistrationAuthority::new(policy(approval), registry, NoIssuer).with_clock(|| NOW)
}

fn station_request(csr: CheckedCsr, key: KeySource) -> StationRequest {
    StationRequest {
        profile: "device".into(),
        caller: StationCaller::Certificate { fingerprint: "01".repeat(32), common_name: Some("line-1".into()) },
        csr: Ok(csr),
        key,
    }
}

#[tokio::test]
async fn a_registered_device_gets_a_plan_that_activates_it() {
    let ra = ra(Approval::Automatic, registry(DeviceState::Expected));
    let csr = csr("SN-1");
    let answer = ra.enroll(station_request(csr.clone(), KeySource::Request)).await;
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
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(cert("device", ProfileKind::Device, Some("SN-1"), 7));
    let ra = ra(Approval::Automatic, reg);
    let answer = ra.enroll(station_request(csr("SN-1"), KeySource::Request)).await;
    let Ok(Admission::Redeliver(c)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(c.serial, vec![7]);
    assert_eq!(ra.registry().redelivered.lock().unwrap().len(), 1, "a re-delivery is audited");
}

#[tokio::test]
async fn a_different_key_for_an_active_device_is_still_refused() {
    // No earlier delivery matches this CSR: the device is active, its batch does not
    // allow re-provisioning.
    let ra = ra(Approval::Automatic, registry(DeviceState::Active));
    let answer = ra.enroll(station_request(csr("SN-1"), KeySource::Request)).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
}

#[tokio::test]
async fn an_earlier_certificate_no_longer_valid_is_not_sent_again() {
    let mut reg = registry(DeviceState::Active);
    let mut revoked = cert("device", ProfileKind::Device, Some("SN-1"), 7);
    revoked.state = CertState::Revoked;
    reg.earlier = Some(revoked);
    let ra = ra(Approval::Automatic, reg);
    let answer = ra.enroll(station_request(csr("SN-1"), KeySource::Request)).await;
    assert_eq!(answer.result, Err(Refusal::AlreadyEnrolled("SN-1".into())));
}

#[tokio::test]
async fn a_repeated_serverkeygen_replaces_the_lost_key() {
    let mut reg = registry(DeviceState::Active);
    reg.earlier = Some(cert("device", ProfileKind::Device, Some("SN-1"), 7));
    let ra = ra(Approval::Automatic, reg);
    let answer = ra.enroll(station_request(csr("SN-1"), KeySource::Server)).await;
    let Ok(Admission::Issue(plan)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(plan.key, PlannedKey::Generate(KeyType::EcdsaP256));
    assert_eq!(plan.effect, Some(Effect::Supersede { issuer: "device".into(), serial: vec![7] }));
}

#[tokio::test]
async fn manual_approval_gates_serverkeygen_as_it_gates_simpleenroll() {
    for key in [KeySource::Request, KeySource::Server] {
        let ra = ra(Approval::Manual, registry(DeviceState::Expected));
        let csr = csr("SN-1");
        let answer = ra.enroll(station_request(csr.clone(), key)).await;
        assert_eq!(answer.result, Ok(Admission::Pending { request_id: sha256_hex(&csr.der) }), "{key:?}");
        // Approved: the plan marks the request issued in the storing transaction.
        ra.registry().approvals.lock().unwrap().insert(sha256_hex(&csr.der), ApprovalState::Approved);
        let Ok(Admission::Issue(plan)) = ra.enroll(station_request(csr.clone(), key)).await.result else {
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
    let answer = ra.enroll(station_request(csr.clone(), KeySource::Request)).await;
    assert_eq!(answer.result, Err(Refusal::Rejected(sha256_hex(&csr.der))));
}

#[tokio::test]
async fn an_issued_approval_is_answered_with_its_certificate_outside_the_window() {
    let mut reg = registry(DeviceState::Active);
    reg.certificates.push(cert("device", ProfileKind::Device, Some("SN-1"), 9));
    let ra = ra(Approval::Manual, reg);
    let csr = csr("SN-1");
    ra.registry()
        .approvals
        .lock()
        .unwrap()
        .insert(sha256_hex(&csr.der), ApprovalState::Issued { issuer: "device".into(), serial: vec![9] });
    let answer = ra.enroll(station_request(csr, KeySource::Request)).await;
    let Ok(Admission::Redeliver(c)) = answer.result else { panic!("{:?}", answer.result) };
    assert_eq!(c.serial, vec![9]);
}

#[tokio::test]
async fn stations_authenticate_in_order() {
    // Credentials only where the profile allows them.
    let mut p = policy(Approval::Automatic);
    p.profiles.get_mut("device").unwrap().station_credentials = false;
    let strict = RegistrationAuthority::new(p, registry(DeviceState::Expected), NoIssuer).with_clock(|| NOW);
    let mut req = station_request(csr("SN-1"), KeySource::Request);
    req.caller = StationCaller::Credential { station: "line-1".into(), secret: b"right".to_vec().into() };
    assert_eq!(strict.enroll(req).await.result, Err(Refusal::CertificateRequired));

    let ra = ra(Approval::Automatic, registry(DeviceState::Expected));
    let mut req = station_request(csr("SN-1"), KeySource::Request);
    req.caller = StationCaller::Credential { station: "line-1".into(), secret: b"wrong".to_vec().into() };
    assert_eq!(ra.enroll(req).await.result, Err(Refusal::BadCredentials("station credentials are not valid")));
    let mut req = station_request(csr("SN-1"), KeySource::Request);
    req.caller = StationCaller::Credential { station: "line-1".into(), secret: b"right".to_vec().into() };
    let answer = ra.enroll(req).await;
    assert_eq!(answer.actor, "station:line-1:credential");
    assert!(matches!(answer.result, Ok(Admission::Issue(_))), "{:?}", answer.result);

    // A bad body is reported only after the station is known.
    let mut req = station_request(csr("SN-1"), KeySource::Request);
    req.caller = StationCaller::Anonymous;
    req.csr = Err(Refusal::UnreadableBody);
    assert_eq!(ra.enroll(req).await.result, Err(Refusal::CredentialsRequired));
    let mut req = station_request(csr("SN-1"), KeySource::Request);
    req.csr = Err(Refusal::UnreadableBody);
    assert_eq!(ra.enroll(req).await.result, Err(Refusal::UnreadableBody));
}

#[tokio::test]
async fn stations_are_held_to_their_scope_and_devices_to_their_state() {
    let mut reg = registry(DeviceState::Expected);
    reg.station.as_mut().unwrap().batches = vec!["B2".into()];
    let answer = ra(Approval::Automatic, reg).enroll(station_request(csr("SN-1"), KeySource::Request)).await;
    assert_eq!(
        answer.result,
        Err(Refusal::OutOfScope { station: "line-1".into(), model: "generic".into(), batch: "B1".into() })
    );
    let answer = ra(Approval::Automatic, registry(DeviceState::Revoked))
        .enroll(station_request(csr("SN-1"), KeySource::Request))
        .await;
    assert_eq!(answer.result, Err(Refusal::DeviceNotEnrollable { id: "SN-1".into(), state: DeviceState::Revoked }));
    let answer = ra(Approval::Automatic, registry(DeviceState::Expected))
        .enroll(station_request(csr("SN-2"), KeySource::Request))
        .await;
    assert_eq!(answer.result, Err(Refusal::UnknownDevice("SN-2".into())));
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
        client_fingerprint: Some(current.fingerprint.clone()),
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
    assert_eq!(plan.effect, Some(Effect::Supersede { issuer: "device".into(), serial: vec![5] }));
    let other = RenewalRequest { csr: Ok(csr("SN-9")), ..request() };
    assert!(matches!(ra.renew(other).await.result, Err(Refusal::RenewalIdentity(_))));
    let none = RenewalRequest { client_fingerprint: None, ..request() };
    assert_eq!(ra.renew(none).await.result, Err(Refusal::CertificateRequired));
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
    };
    let plan = plan_for_operator(&p, request("device", None)).unwrap();
    assert!(matches!(plan.subject, Subject::Device { ref id, .. } if id == "SN-1"));
    assert_eq!(plan_for_operator(&p, request("nope", None)), Err(Refusal::UnknownProfile("nope".into())));
    assert_eq!(plan_for_operator(&p, request("device", Some("x"))), Err(Refusal::UnknownModelName("x".into())));
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
}
