//! The issuance core against real storage (SQLite and PostgreSQL) and real keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ca_service::hierarchy::{self, HierarchyError};
use ca_service::issuance::{IssueError, IssueRequest, Pki};
use ca_service::store::CertStatus;
use common::{csr, csr_with, Backend, Env};
use x509_parser::prelude::*;

fn request(profile: &str, der: &[u8]) -> IssueRequest {
    IssueRequest {
        profile: profile.into(),
        csr: enrollment::check_csr(der).unwrap(),
        device_id: None,
        model: None,
        actor: "test".into(),
    }
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

/// Checks `leaf` is signed by `issuer_der`'s key and names it as issuer.
fn assert_signed_by(leaf: &[u8], issuer_der: &[u8]) {
    let (l, i) = (parse(leaf), parse(issuer_der));
    assert_eq!(l.issuer(), i.subject());
    l.verify_signature(Some(i.public_key())).expect("signature verifies with the issuer key");
    let aki = l.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
        _ => None,
    });
    let ski = i.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.clone()),
        _ => None,
    });
    assert_eq!(aki.expect("AKI").0, ski.expect("issuer SKI").0);
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

on_both_stores!(
    init_builds_the_default_hierarchy,
    init_refuses_an_existing_hierarchy_and_changes_nothing,
    init_refuses_a_taken_key_label_before_creating_anything,
    device_certificate_is_stored_and_audited_before_release,
    requests_cannot_add_what_the_profile_does_not_grant,
    serial_collision_is_retried_with_a_fresh_serial,
    concurrent_issuance_keeps_serials_unique_and_the_chain_intact,
);

async fn init_builds_the_default_hierarchy(backend: Backend) {
    let env = Env::new(backend).await;
    env.init().await;
    let pki = env.pki().await;
    let names: Vec<_> = pki.cas().map(|c| c.record.name.clone()).collect();
    for n in ["identity-root", "device", "station", "update-root", "update-authority"] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    let der = |n: &str| pki.ca(n).unwrap().record.cert_der.clone();
    assert_signed_by(&der("device"), &der("identity-root"));
    assert_signed_by(&der("station"), &der("identity-root"));
    assert_signed_by(&der("update-authority"), &der("update-root"));
    // The two trust anchors are separate: the update authority never chains to the
    // identity root.
    assert_ne!(parse(&der("update-authority")).issuer(), parse(&der("identity-root")).subject());
    for (name, path_len) in [("identity-root", 1), ("device", 0), ("update-authority", 0)] {
        let c = der(name);
        let cert = parse(&c);
        let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
        assert!(bc.critical && bc.value.ca, "{name}: critical CA:TRUE");
        assert_eq!(bc.value.path_len_constraint, Some(path_len), "{name}");
        assert!(cert.key_usage().unwrap().expect("keyUsage").critical, "{name}: keyUsage critical");
    }
    // Roots only sign while the ceremony runs: the service loads issuing CAs' keys.
    assert!(pki.ca("identity-root").unwrap().issuer().is_none());
    assert!(pki.ca("device").unwrap().issuer().is_some());
    // 5 CAs + 3 delegated OCSP signers, each with one audit entry.
    assert_eq!(env.audit_len().await, 8);
}

async fn init_refuses_an_existing_hierarchy_and_changes_nothing(backend: Backend) {
    let env = Env::new(backend).await;
    env.init().await;
    let before = env.audit_len().await;
    let err = hierarchy::init(env.config.clone(), env.store.clone(), env.keys.clone(), "test").await.unwrap_err();
    assert!(matches!(err, HierarchyError::Exists(5)), "{err}");
    assert_eq!(env.audit_len().await, before);
}

async fn init_refuses_a_taken_key_label_before_creating_anything(backend: Backend) {
    let env = Env::new(backend).await;
    // A leftover key (e.g. from an aborted ceremony) under one of the labels.
    env.keys.generate("default", "ca-station", hsm::KeyAlgorithm::EcdsaP256).unwrap();
    let err = hierarchy::init(env.config.clone(), env.store.clone(), env.keys.clone(), "test").await.unwrap_err();
    assert!(err.to_string().contains("ca-station"), "{err}");
    assert!(env.store.list_cas().await.unwrap().is_empty());
    assert_eq!(env.audit_len().await, 0);
    // And no other CA key was generated on the way.
    assert!(env.keys.find("default", "ca-identity-root").is_err());
}

async fn device_certificate_is_stored_and_audited_before_release(backend: Backend) {
    let env = Env::new(backend).await;
    env.init().await;
    let pki = env.pki().await;
    let before = env.audit_len().await;
    let issued = pki.issue(request("device", &csr("SN-42"))).await.unwrap();

    let stored = env.store.get_certificate("device", &issued.record.serial).await.unwrap().expect("stored");
    assert_eq!(stored.der, issued.record.der);
    assert_eq!(stored.status, CertStatus::Valid);
    assert_eq!(stored.device_id.as_deref(), Some("SN-42"));
    assert_eq!(env.audit_len().await, before + 1);
    let last = env.store.audit_entries(before, 10).await.unwrap();
    assert_eq!(last[0].event.action, "certificate.issue");
    assert!(last[0].event.target.ends_with(&hex::encode(&issued.record.serial)));

    let cert = parse(&issued.record.der);
    assert_signed_by(&issued.record.der, &pki.ca("device").unwrap().record.cert_der);
    assert_eq!(issued.record.serial.len(), 16);
    assert_eq!(cert.raw_serial(), issued.record.serial.as_slice());
    assert!(issued.record.serial[0] & 0x80 == 0, "positive serial");
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.code_signing && eku.other.is_empty());
    assert_eq!(issued.chain, vec![pki.ca("device").unwrap().record.cert_der.clone()]);
    assert!(issued.chain_pem().matches("BEGIN CERTIFICATE").count() == 2);
}

async fn requests_cannot_add_what_the_profile_does_not_grant(backend: Backend) {
    let env = Env::with_config(backend, |c| {
        c.profiles.get_mut("station").unwrap().key_types = vec![ca_service::config::KeyType::EcdsaP256];
    })
    .await;
    env.init().await;
    let pki = env.pki().await;
    let before = env.audit_len().await;

    let ca_true = csr_with("SN-1", &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    });
    let err = pki.issue(request("device", &ca_true)).await.unwrap_err();
    assert!(matches!(&err, IssueError::Policy(m) if m.contains("CA:TRUE")), "{err}");

    let code_signing = csr_with("SN-1", &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning]
    });
    let err = pki.issue(request("device", &code_signing)).await.unwrap_err();
    assert!(matches!(&err, IssueError::Policy(m) if m.contains("1.3.6.1.5.5.7.3.3")), "{err}");

    // Asking for exactly what the profile gives is fine.
    let client_auth = csr_with("SN-2", &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
    });
    pki.issue(request("device", &client_auth)).await.unwrap();

    let ed = csr_with("station-7", &rcgen::PKCS_ED25519, |_| {});
    let err = pki.issue(request("station", &ed)).await.unwrap_err();
    assert!(matches!(&err, IssueError::Policy(m) if m.contains("ed25519")), "{err}");

    let err = pki.issue(request("no-such-profile", &csr("SN-3"))).await.unwrap_err();
    assert!(matches!(&err, IssueError::UnknownProfile(p) if p == "no-such-profile"), "{err}");

    let mut bad_id = request("device", &csr("SN-4"));
    bad_id.device_id = Some("../etc".into());
    assert!(pki.issue(bad_id).await.unwrap_err().to_string().contains("invalid device id"));

    let mut bad_model = request("device", &csr("SN-5"));
    bad_model.model = Some("toaster".into());
    assert!(pki.issue(bad_model).await.unwrap_err().to_string().contains("toaster"));

    // Only the one legitimate request left a trace.
    assert_eq!(env.audit_len().await, before + 1);
}

async fn serial_collision_is_retried_with_a_fresh_serial(backend: Backend) {
    let env = Env::new(backend).await;
    env.init().await;
    // The first two draws repeat one serial; the third is new.
    let draws = Arc::new(AtomicUsize::new(0));
    let d = draws.clone();
    let pki: Pki = env.pki().await.with_serials(move || {
        let n = d.fetch_add(1, Ordering::SeqCst);
        let mut s = [0x41u8; 16];
        if n >= 2 {
            s[15] = n as u8;
        }
        s
    });
    let first = pki.issue(request("device", &csr("SN-A"))).await.unwrap();
    let second = pki.issue(request("device", &csr("SN-B"))).await.unwrap();
    assert_eq!(first.record.serial, vec![0x41; 16]);
    assert_ne!(second.record.serial, first.record.serial);
    assert_eq!(draws.load(Ordering::SeqCst), 3, "the collision was re-signed once");
    assert_eq!(parse(&second.record.der).raw_serial(), second.record.serial.as_slice());
    // Only stored certificates are audited.
    assert_eq!(env.audit_len().await, 8 + 2);
}

async fn concurrent_issuance_keeps_serials_unique_and_the_chain_intact(backend: Backend) {
    let env = Env::new(backend).await;
    env.init().await;
    let pki = Arc::new(env.pki().await);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let pki = pki.clone();
            tokio::spawn(async move { pki.issue(request("device", &csr(&format!("SN-{i}")))).await.unwrap() })
        })
        .collect();
    let mut serials = std::collections::HashSet::new();
    for t in tasks {
        let issued = t.await.unwrap();
        assert!(serials.insert(issued.record.serial.clone()));
        assert!(env.store.get_certificate("device", &issued.record.serial).await.unwrap().is_some());
    }
    assert_eq!(env.audit_len().await, 8 + 64);
}

/// The whole hierarchy on a SoftHSM token: keys generated in the token, certificates
/// signed there, and the keys cannot be read out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hierarchy_on_softhsm() {
    let token = hsm::testing::SoftHsmFixture::new().unwrap();
    let module = token.config.module.clone();
    let label = token.config.token_label.clone();
    let pin_file = match &token.config.pin {
        hsm::SecretSource::File(p) => p.clone(),
        other => panic!("fixture PIN source {other:?}"),
    };
    let env = Env::with_config(Backend::Sqlite, |c| {
        c.key_stores.insert(
            "hsm".into(),
            ca_service::config::KeyStoreConfig::Pkcs11 {
                module,
                token_label: label,
                pin_env: None,
                pin_file: Some(pin_file),
                sessions: Some(2),
            },
        );
        for ca in c.cas.values_mut() {
            ca.key_store = "hsm".into();
        }
    })
    .await;
    env.init().await;
    let pki = env.pki().await;
    let issued = pki.issue(request("device", &csr("SN-HSM-1"))).await.unwrap();
    assert_signed_by(&issued.record.der, &pki.ca("device").unwrap().record.cert_der);
    assert_signed_by(&pki.ca("device").unwrap().record.cert_der, &pki.ca("identity-root").unwrap().record.cert_der);
    // Nothing of the CA keys reached the software store's directory.
    assert!(!env.dir.path().join("keys").join("ca-device.key").exists());
}
