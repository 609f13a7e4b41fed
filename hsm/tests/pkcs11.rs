//! The PKCS#11 store against a real SoftHSM2 token (one fresh token per test).
//! These tests fail — they do not skip — when SoftHSM2 is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use hsm::pkcs11::{shared_context, Pkcs11KeyStore};
use hsm::testing::{verify_signature, SoftHsmFixture};
use hsm::{HsmError, KeyAlgorithm, KeyStore, SecretSource};

fn fixture() -> SoftHsmFixture {
    SoftHsmFixture::new().unwrap_or_else(|e| panic!("SoftHSM2 test token: {e}"))
}

/// A raw session of our own on the fixture's token, in the same application as the
/// store (same process, same initialized module), so it shares the store's login.
fn raw_session(fx: &SoftHsmFixture) -> (Session, Slot) {
    let ctx = shared_context(&fx.config.module).unwrap();
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == fx.config.token_label)
        .expect("fixture token visible");
    (ctx.open_rw_session(slot).unwrap(), slot)
}

fn eddsa_supported(fx: &SoftHsmFixture) -> bool {
    let ctx = shared_context(&fx.config.module).unwrap();
    let (_, slot) = raw_session(fx);
    let mechs = ctx.get_mechanism_list(slot).unwrap();
    mechs.contains(&MechanismType::EDDSA) && mechs.contains(&MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
}

fn private_key(session: &Session, label: &str) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec()), Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert_eq!(found.len(), 1, "exactly one private key labelled {label}");
    found[0]
}

#[test]
fn all_algorithms_generate_find_and_sign_verifiably() {
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    let ed25519 = eddsa_supported(&fx);
    for alg in KeyAlgorithm::ALL {
        let label = format!("key-{alg}");
        let generated = match store.generate(&label, alg) {
            Err(HsmError::Unsupported(why)) if alg == KeyAlgorithm::Ed25519 && !ed25519 => {
                eprintln!("Ed25519 not offered by this SoftHSM build: {why}");
                assert!(matches!(store.find(&label), Err(HsmError::KeyNotFound(_))));
                continue;
            }
            other => other.unwrap(),
        };
        let found = store.find(&label).unwrap();
        assert_eq!(found.algorithm(), alg);
        assert_eq!(found.label(), label);
        assert_eq!(found.public_key_der(), generated.public_key_der());

        let msg = format!("message for {alg}").repeat(50);
        for signer in [&generated, &found] {
            let sig = signer.sign(msg.as_bytes()).unwrap();
            verify_signature(signer.public_key_der(), alg, msg.as_bytes(), &sig).unwrap();
            assert!(verify_signature(signer.public_key_der(), alg, b"tampered", &sig).is_err());
        }
    }
    store.ping().unwrap();
}

#[test]
fn ed25519_works_or_is_reported_unsupported() {
    // SoftHSM 2.6 built against OpenSSL >= 1.1.1 offers EdDSA; a build without it must
    // get a clean Unsupported from the store, not a token error.
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    if eddsa_supported(&fx) {
        let s = store.generate("ed", KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(s.sign(b"m").unwrap().len(), 64);
    } else {
        assert!(matches!(store.generate("ed", KeyAlgorithm::Ed25519), Err(HsmError::Unsupported(_))));
    }
}

#[test]
fn private_keys_are_sensitive_and_not_extractable() {
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    store.generate("ec", KeyAlgorithm::EcdsaP256).unwrap();
    store.generate("rsa", KeyAlgorithm::Rsa3072).unwrap();
    let (session, _) = raw_session(&fx);
    for (label, secret_attr) in [("ec", AttributeType::Value), ("rsa", AttributeType::PrivateExponent)] {
        let key = private_key(&session, label);
        // The secret value cannot be read...
        let values = session.get_attributes(key, &[secret_attr]).unwrap();
        assert!(values.is_empty(), "{label}: secret attribute readable: {values:?}");
        let info = session.get_attribute_info(key, &[secret_attr]).unwrap();
        assert!(matches!(info[0], AttributeInfo::Sensitive | AttributeInfo::Unavailable), "{label}: {info:?}");
        // ...and the flags say why.
        let flags = session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Private,
                    AttributeType::Token,
                ],
            )
            .unwrap();
        for a in &flags {
            match a {
                Attribute::Sensitive(v)
                | Attribute::AlwaysSensitive(v)
                | Attribute::NeverExtractable(v)
                | Attribute::Private(v)
                | Attribute::Token(v) => assert!(*v, "{label}: {a:?}"),
                Attribute::Extractable(v) => assert!(!*v, "{label}: {a:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(flags.len(), 6, "{label}: all flags readable");

        // It signs and does nothing else: a CA key must not be a decryption or
        // unwrapping oracle.
        let usage = session
            .get_attributes(
                key,
                &[AttributeType::Sign, AttributeType::Decrypt, AttributeType::Unwrap, AttributeType::Derive],
            )
            .unwrap();
        assert_eq!(usage.len(), 4, "{label}: all usage flags readable");
        for a in &usage {
            match a {
                Attribute::Sign(v) => assert!(*v, "{label}: {a:?}"),
                Attribute::Decrypt(v) | Attribute::Unwrap(v) | Attribute::Derive(v) => {
                    assert!(!*v, "{label}: {a:?}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn wrong_pin_is_reported_as_such() {
    let fx = fixture();
    let mut cfg = fx.config.clone();
    let bad = fx.dir().join("bad.pin");
    std::fs::write(&bad, "not-the-pin").unwrap();
    std::fs::set_permissions(&bad, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
        .unwrap();
    cfg.pin = SecretSource::File(bad);
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(matches!(err, HsmError::WrongPin), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-the-pin"));
    // The right PIN still works afterwards.
    Pkcs11KeyStore::open(&fx.config).unwrap();
}

#[test]
fn unknown_token_is_reported() {
    let fx = fixture();
    let mut cfg = fx.config.clone();
    cfg.token_label = "no-such-token".into();
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(matches!(err, HsmError::TokenNotFound(ref l) if l == "no-such-token"), "{err:?}");
}

#[test]
fn missing_key_existing_label_and_bad_label() {
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    assert!(matches!(store.find("nope"), Err(HsmError::KeyNotFound(ref l)) if l == "nope"));
    let first = store.generate("taken", KeyAlgorithm::EcdsaP256).unwrap();
    let err = store.generate("taken", KeyAlgorithm::EcdsaP384).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists(_)), "{err:?}");
    assert_eq!(store.find("taken").unwrap().public_key_der(), first.public_key_der());
    assert!(matches!(store.generate("../x", KeyAlgorithm::EcdsaP256), Err(HsmError::Unsupported(_))));
}

#[test]
fn a_second_store_instance_finds_the_key() {
    let fx = fixture();
    let spki = {
        let store = Pkcs11KeyStore::open(&fx.config).unwrap();
        store.generate("persist", KeyAlgorithm::EcdsaP384).unwrap().public_key_der().to_vec()
    };
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    let signer = store.find("persist").unwrap();
    assert_eq!(signer.public_key_der(), spki);
    let sig = signer.sign(b"again").unwrap();
    verify_signature(&spki, KeyAlgorithm::EcdsaP384, b"again", &sig).unwrap();
}

#[test]
fn many_threads_share_a_pool_of_two_sessions() {
    let fx = fixture();
    assert_eq!(fx.config.sessions, 2);
    let store = Arc::new(Pkcs11KeyStore::open(&fx.config).unwrap());
    let idle = hsm::SessionUse { in_use: 0, open: 1, max: 2 };
    assert_eq!(store.sessions(), Some(idle), "open logs in one session and returns it");
    let signer = store.generate("busy", KeyAlgorithm::EcdsaP256).unwrap();
    // The pool's use as a metrics sampler sees it, while eight threads sign. On two
    // cores the sampler may not be scheduled while a fixed number of signatures runs,
    // so the signers go on until it has seen a session in use (or ten seconds pass).
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, seen, done) = (store.clone(), seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let u = store.sessions().unwrap();
                assert!(u.in_use <= u.open && u.open <= u.max && u.max == 2, "{u:?}");
                if u.in_use >= 1 {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (signer, seen) = (Arc::clone(&signer), seen.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while i < 25
                    || (!seen.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline)
                {
                    let msg = format!("thread {t} message {i}");
                    let sig = signer.sign(msg.as_bytes()).unwrap();
                    verify_signature(signer.public_key_der(), KeyAlgorithm::EcdsaP256, msg.as_bytes(), &sig).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(seen.load(std::sync::atomic::Ordering::Relaxed), "signing was seen to hold a session");
    let after = store.sessions().unwrap();
    assert_eq!((after.in_use, after.max), (0, 2), "every session went back: {after:?}");
}

#[test]
fn signing_recovers_after_the_token_logs_us_out() {
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    let signer = store.generate("survivor", KeyAlgorithm::EcdsaP256).unwrap();
    signer.sign(b"before").unwrap();

    // Behind the pool's back: C_Logout on our own session logs out every session of
    // the application on this token (and SoftHSM drops private-object handles).
    let (session, _) = raw_session(&fx);
    assert_eq!(session.get_session_info().unwrap().session_state(), SessionState::RwUser);
    session.logout().unwrap();
    assert_eq!(session.get_session_info().unwrap().session_state(), SessionState::RwPublic);

    let sig = signer.sign(b"after").unwrap();
    verify_signature(signer.public_key_der(), KeyAlgorithm::EcdsaP256, b"after", &sig).unwrap();
    // The re-login restored the application's login for every session.
    assert_eq!(session.get_session_info().unwrap().session_state(), SessionState::RwUser);

    // And the readiness probe recovers the same way.
    session.logout().unwrap();
    store.ping().unwrap();
    assert_eq!(session.get_session_info().unwrap().session_state(), SessionState::RwUser);
    signer.sign(b"and again").unwrap();
}

#[test]
fn a_destroyed_key_is_gone_and_its_neighbour_is_not() {
    let fx = fixture();
    let store = Pkcs11KeyStore::open(&fx.config).unwrap();
    store.generate("retired", KeyAlgorithm::EcdsaP256).unwrap();
    let kept = store.generate("current", KeyAlgorithm::EcdsaP256).unwrap();
    store.destroy("retired").unwrap();
    assert!(matches!(store.find("retired"), Err(HsmError::KeyNotFound(_))));
    assert!(matches!(store.destroy("retired"), Err(HsmError::KeyNotFound(_))));
    assert_eq!(store.find("current").unwrap().public_key_der(), kept.public_key_der());
    // Both halves went: the label is free again.
    store.generate("retired", KeyAlgorithm::EcdsaP256).unwrap();
    assert!(matches!(store.destroy("../x"), Err(HsmError::Unsupported(_))));
}
