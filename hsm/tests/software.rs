//! The software key store against its promises: keys work and verify independently,
//! are encrypted at rest in the documented format, are never replaced, and the store
//! refuses the wrong secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use der::Decode;
use hsm::software::{KdfParams, SoftwareConfig, SoftwareKeyStore, SoftwareSecret};
use hsm::testing::verify_signature;
use hsm::{HsmError, KeyAlgorithm, KeyStore, SecretSource};
use spki::SubjectPublicKeyInfoRef;
use tempfile::TempDir;

/// Cheap Argon2 so debug-build tests stay fast; production cost is the default.
const FAST_KDF: KdfParams = KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 };

const KEK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Secret files must be the owner's only.
fn write_secret(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn key_file_config(dir: &TempDir) -> SoftwareConfig {
    let kek = dir.path().join("kek");
    if !kek.exists() {
        write_secret(&kek, format!("{KEK_HEX}\n").as_bytes());
    }
    SoftwareConfig::new(dir.path().join("keys"), SoftwareSecret::KeyFile(SecretSource::File(kek)))
}

fn passphrase_config(dir: &TempDir, passphrase: &str) -> SoftwareConfig {
    let file = dir.path().join(format!("pass-{}", hex::encode(passphrase)));
    write_secret(&file, format!("{passphrase}\n").as_bytes());
    SoftwareConfig {
        dir: dir.path().join("keys"),
        secret: SoftwareSecret::Passphrase(SecretSource::File(file)),
        kdf: FAST_KDF,
    }
}

fn spki_key_bits(spki: &[u8]) -> Vec<u8> {
    SubjectPublicKeyInfoRef::from_der(spki).unwrap().subject_public_key.raw_bytes().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn all_algorithms_generate_find_and_sign_verifiably() {
    let dir = TempDir::new().unwrap();
    let store = SoftwareKeyStore::open(&key_file_config(&dir)).unwrap();
    for alg in KeyAlgorithm::ALL {
        let label = format!("key-{alg}");
        let generated = store.generate(&label, alg).unwrap();
        assert_eq!(generated.label(), label);
        assert_eq!(generated.algorithm(), alg);
        let found = store.find(&label).unwrap();
        assert_eq!(found.algorithm(), alg);
        assert_eq!(found.public_key_der(), generated.public_key_der());

        let msg = format!("to be signed by {alg}");
        for signer in [&generated, &found] {
            let sig = signer.sign(msg.as_bytes()).unwrap();
            verify_signature(signer.public_key_der(), alg, msg.as_bytes(), &sig).unwrap();
            // The verifier is not a rubber stamp.
            assert!(verify_signature(signer.public_key_der(), alg, b"other message", &sig).is_err());
        }
        if alg == KeyAlgorithm::Ed25519 {
            assert_eq!(found.sign(b"x").unwrap().len(), 64);
        }
        if alg == KeyAlgorithm::Rsa3072 {
            assert_eq!(found.sign(b"x").unwrap().len(), 384);
        }
        if matches!(alg, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) {
            // DER Ecdsa-Sig-Value, not raw r||s
            assert_eq!(found.sign(b"x").unwrap()[0], 0x30);
        }
    }
    store.ping().unwrap();
}

#[test]
fn a_new_instance_finds_and_uses_existing_keys() {
    let dir = TempDir::new().unwrap();
    let (spki, label) = {
        let store = SoftwareKeyStore::open(&passphrase_config(&dir, "correct horse")).unwrap();
        let s = store.generate("issuing-ca", KeyAlgorithm::EcdsaP384).unwrap();
        (s.public_key_der().to_vec(), s.label().to_owned())
    };
    let store = SoftwareKeyStore::open(&passphrase_config(&dir, "correct horse")).unwrap();
    let signer = store.find(&label).unwrap();
    assert_eq!(signer.public_key_der(), spki);
    let sig = signer.sign(b"hello").unwrap();
    verify_signature(&spki, KeyAlgorithm::EcdsaP384, b"hello", &sig).unwrap();
}

#[test]
fn wrong_passphrase_is_detected_at_open_even_without_keys() {
    let dir = TempDir::new().unwrap();
    drop(SoftwareKeyStore::open(&passphrase_config(&dir, "right passphrase")).unwrap());
    let err = SoftwareKeyStore::open(&passphrase_config(&dir, "wrong passphrase")).unwrap_err();
    assert!(matches!(err, HsmError::WrongPassphrase), "{err:?}");
    // ...and with keys present.
    let store = SoftwareKeyStore::open(&passphrase_config(&dir, "right passphrase")).unwrap();
    store.generate("k", KeyAlgorithm::Ed25519).unwrap();
    let err = SoftwareKeyStore::open(&passphrase_config(&dir, "Right passphrase")).unwrap_err();
    assert!(matches!(err, HsmError::WrongPassphrase), "{err:?}");
    // The error never carries the secret.
    assert!(!err.to_string().contains("passphrase\""));
    assert!(!format!("{err:?}").contains("Right"));
}

#[test]
fn wrong_key_file_is_detected_and_secret_kind_must_match() {
    let dir = TempDir::new().unwrap();
    drop(SoftwareKeyStore::open(&key_file_config(&dir)).unwrap());
    let other = dir.path().join("other-kek");
    write_secret(&other, &[0x42u8; 32]);
    let cfg = SoftwareConfig::new(dir.path().join("keys"), SoftwareSecret::KeyFile(SecretSource::File(other)));
    assert!(matches!(SoftwareKeyStore::open(&cfg), Err(HsmError::WrongPassphrase)));

    let err = SoftwareKeyStore::open(&passphrase_config(&dir, "a passphrase")).unwrap_err();
    assert!(matches!(err, HsmError::SecretUnavailable(_)), "{err:?}");

    let missing = SoftwareConfig::new(
        dir.path().join("keys2"),
        SoftwareSecret::Passphrase(SecretSource::Env("HSM_TEST_SURELY_UNSET_VAR".into())),
    );
    assert!(matches!(SoftwareKeyStore::open(&missing), Err(HsmError::SecretUnavailable(_))));
}

#[test]
fn files_are_private() {
    let dir = TempDir::new().unwrap();
    let cfg = key_file_config(&dir);
    let store = SoftwareKeyStore::open(&cfg).unwrap();
    store.generate("k", KeyAlgorithm::EcdsaP256).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cfg.dir), 0o700);
    assert_eq!(mode(&cfg.dir.join("k.key")), 0o600);
    assert_eq!(mode(&cfg.dir.join(hsm::software::METADATA_FILE)), 0o600);
    // Only the metadata and the key: no temp files left behind.
    let mut names: Vec<_> =
        fs::read_dir(&cfg.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["k.key", "keystore.json"]);
}

/// Decrypts a key file independently (AES-256-GCM, nonce after the 9-byte header,
/// AAD = header magic ‖ algorithm ‖ label) and checks that the plaintext is a PKCS#8
/// holding the public key while the file itself holds no trace of it.
#[test]
fn key_files_are_encrypted_pkcs8() {
    let dir = TempDir::new().unwrap();
    let cfg = key_file_config(&dir);
    let store = SoftwareKeyStore::open(&cfg).unwrap();
    let mut kek = [0u8; 32];
    hex::decode_to_slice(KEK_HEX, &mut kek).unwrap();
    let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).unwrap());

    for alg in KeyAlgorithm::ALL {
        let label = format!("enc-{alg}");
        let signer = store.generate(&label, alg).unwrap();
        let public = spki_key_bits(signer.public_key_der());
        let file = fs::read(cfg.dir.join(format!("{label}.key"))).unwrap();

        // Probe: the 16 bytes of the public key from its middle, and its base64.
        let probe = &public[public.len() / 2..public.len() / 2 + 16];
        assert!(!contains(&file, probe), "{alg}: public key bytes visible in key file");
        assert!(!contains(&file, &public), "{alg}");

        // Independent decryption proves what the plaintext was.
        let (header, rest) = file.split_at(9);
        assert_eq!(&header[..8], b"DPKIKEY\x01");
        let (nonce, ct) = rest.split_at(12);
        let mut aad = header.to_vec();
        aad.extend_from_slice(label.as_bytes());
        let mut buf = ct.to_vec();
        let plain = kek
            .open_in_place(Nonce::try_assume_unique_for_key(nonce).unwrap(), Aad::from(&aad), &mut buf)
            .expect("decrypts with the KEK and label+algorithm AAD");
        assert_eq!(plain[0], 0x30, "PKCS#8 is a SEQUENCE");
        assert!(contains(plain, probe), "{alg}: plaintext PKCS#8 carries the public key");
        // The AAD really binds the label.
        let mut buf = ct.to_vec();
        let mut wrong = header.to_vec();
        wrong.extend_from_slice(b"another-label");
        assert!(kek
            .open_in_place(Nonce::try_assume_unique_for_key(nonce).unwrap(), Aad::from(&wrong), &mut buf)
            .is_err());
    }
}

#[test]
fn tampered_or_renamed_key_files_are_refused() {
    let dir = TempDir::new().unwrap();
    let cfg = key_file_config(&dir);
    let store = SoftwareKeyStore::open(&cfg).unwrap();
    store.generate("a", KeyAlgorithm::Ed25519).unwrap();
    let a = cfg.dir.join("a.key");

    // Renamed: same ciphertext under another label.
    fs::copy(&a, cfg.dir.join("b.key")).unwrap();
    assert!(matches!(store.find("b"), Err(HsmError::Corrupt(_))));

    // Algorithm byte changed.
    let mut bytes = fs::read(&a).unwrap();
    bytes[8] = 1;
    fs::write(cfg.dir.join("c.key"), &bytes).unwrap();
    assert!(matches!(store.find("c"), Err(HsmError::Corrupt(_))));

    // One ciphertext bit flipped.
    let mut bytes = fs::read(&a).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    fs::write(&a, &bytes).unwrap();
    assert!(matches!(store.find("a"), Err(HsmError::Corrupt(_))));
}

#[test]
fn labels_are_never_reused_and_must_exist() {
    let (store, _dir) = hsm::testing::software_store().unwrap();
    let first = store.generate("dup", KeyAlgorithm::EcdsaP256).unwrap();
    let err = store.generate("dup", KeyAlgorithm::Ed25519).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists(ref l) if l == "dup"), "{err:?}");
    // The original key is untouched.
    assert_eq!(store.find("dup").unwrap().public_key_der(), first.public_key_der());
    assert_eq!(store.find("dup").unwrap().algorithm(), KeyAlgorithm::EcdsaP256);

    let err = store.find("absent").unwrap_err();
    assert!(matches!(err, HsmError::KeyNotFound(ref l) if l == "absent"), "{err:?}");
}

#[test]
fn concurrent_generation_of_one_label_has_exactly_one_winner() {
    let (store, _dir) = hsm::testing::software_store().unwrap();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                store.generate("race", KeyAlgorithm::EcdsaP256).map(|s| s.public_key_der().to_vec())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, HsmError::KeyExists(_))));
    assert_eq!(store.find("race").unwrap().public_key_der(), winners[0].as_slice());
}

#[test]
fn bad_labels_are_refused_and_nothing_escapes_the_directory() {
    let dir = TempDir::new().unwrap();
    let cfg = key_file_config(&dir);
    let store = SoftwareKeyStore::open(&cfg).unwrap();
    for label in ["../x", "a/b", "..", ".hidden", "", "with space", "x\0y"] {
        let err = store.generate(label, KeyAlgorithm::Ed25519).unwrap_err();
        assert!(matches!(err, HsmError::Unsupported(_)), "{label:?}: {err:?}");
        let err = store.find(label).unwrap_err();
        assert!(matches!(err, HsmError::Unsupported(_)), "{label:?}: {err:?}");
    }
    assert!(!dir.path().join("x.key").exists());
    assert!(!cfg.dir.join("a").exists());
}

#[test]
fn passphrase_store_records_its_kdf_and_reopens_with_it() {
    let dir = TempDir::new().unwrap();
    let cfg = passphrase_config(&dir, "p");
    drop(SoftwareKeyStore::open(&cfg).unwrap());
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(cfg.dir.join("keystore.json")).unwrap()).unwrap();
    assert_eq!(meta["kek"]["type"], "argon2id");
    assert_eq!(meta["kek"]["memory_kib"], 256);
    assert!(!meta.to_string().contains("\"p\""));
    // Reopening with a different configured cost still works: the stored one is used.
    let mut cfg2 = cfg.clone();
    cfg2.kdf = KdfParams { memory_kib: 512, iterations: 2, parallelism: 1 };
    SoftwareKeyStore::open(&cfg2).unwrap();
}

#[test]
fn a_destroyed_key_is_gone_and_its_neighbour_is_not() {
    let (store, _dir) = hsm::testing::software_store().unwrap();
    store.generate("retired", KeyAlgorithm::EcdsaP256).unwrap();
    let kept = store.generate("current", KeyAlgorithm::EcdsaP256).unwrap();
    store.destroy("retired").unwrap();
    assert!(matches!(store.find("retired"), Err(HsmError::KeyNotFound(_))));
    assert!(matches!(store.destroy("retired"), Err(HsmError::KeyNotFound(_))));
    assert_eq!(store.find("current").unwrap().public_key_der(), kept.public_key_der());
    assert!(matches!(store.destroy("../current"), Err(HsmError::Unsupported(_))));
}
