//! Rule 7, "the signer was logged": with a log policy, the signer certificate's
//! issuance must be proven (C2SP tlog-proof) to be in the trusted log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use common::*;
use update_trust::tlog::{self, NoteSigner, SignError, Verifier};
use update_trust::{verify_detached, verify_detached_logged, LogPolicy, Policy, VerifyError, VerifyTime};

const FIRMWARE: &[u8] = b"firmware image v2.0.0 for device class 7";

/// A log key: Ed25519, named like its log.
struct LogKey(Ed25519KeyPair, String);

impl NoteSigner for LogKey {
    fn name(&self) -> &str {
        &self.1
    }
    fn key_id(&self) -> u32 {
        tlog::key_id_ed25519(&self.1, self.0.public_key().as_ref())
    }
    fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.0.sign(m).as_ref().to_vec())
    }
}

fn log_key(name: &str) -> (LogKey, Verifier) {
    let key = Ed25519KeyPair::generate().unwrap();
    let vkey = tlog::verifier_key(name, tlog::SIG_ED25519, key.public_key().as_ref());
    (LogKey(key, name.to_string()), Verifier::parse(&vkey).unwrap())
}

/// An audit entry as the service logs it (canonical JSON, details as a string).
fn entry(seq: u64, action: &str, details: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "seq": seq,
        "time_us": 1_700_000_000_000_000_u64 + seq,
        "actor": "operator:alice",
        "action": action,
        "target": "certificate:update-ca/01",
        "outcome": "success",
        "details": details.to_string(),
    }))
    .unwrap()
}

fn issuance_of(cert_der: &[u8]) -> Vec<u8> {
    let fp = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der));
    entry(2, "certificate.issue", serde_json::json!({ "profile": "update-signing", "fingerprint": fp }))
}

/// A log of three entries with `logged` at index 1, and its proof under `key`.
fn proof_for(logged: &[u8], key: &LogKey) -> String {
    let a = tlog::leaf_hash(&entry(1, "update-request.approve", serde_json::json!({})));
    let b = tlog::leaf_hash(logged);
    let c = tlog::leaf_hash(&entry(3, "update-request.approve", serde_json::json!({})));
    let root = tlog::node_hash(&tlog::node_hash(&a, &b), &c);
    let cp = tlog::Checkpoint { origin: key.1.clone(), size: 3, root, extensions: vec![] };
    let note = tlog::sign_note(&cp.to_text(), &[key as &dyn NoteSigner]).unwrap();
    tlog::TlogProof { extra: Some(logged.to_vec()), index: 1, hashes: vec![a, c], checkpoint: note }.to_text()
}

fn policy<'a>(anchors: &'a [Vec<u8>], verifiers: &'a [Verifier]) -> Policy<'a> {
    Policy {
        trust_anchors: anchors,
        crls: &[],
        device_class: Some(class(7)),
        time: VerifyTime::Now,
        log: Some(LogPolicy { verifiers }),
    }
}

fn not_logged(r: Result<update_trust::Verified, VerifyError>) -> String {
    match r {
        Err(VerifyError::NotLogged(why)) => why,
        other => panic!("expected NotLogged, got {other:?}"),
    }
}

#[test]
fn a_proof_of_the_signers_issuance_is_accepted() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let (key, verifier) = log_key("ca.example/updates-log");
    let sig = pki.sign(FIRMWARE);
    let proof = proof_for(&issuance_of(&pki.signer_cert), &key);
    let (_, other_log) = log_key("other.example/log");
    let v = verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, std::slice::from_ref(&verifier)))
        .unwrap();
    assert_eq!(v.signer_subject, "CN=Release Signer 1");
    // Several trusted keys (another log, a rotation): any one that signed will do.
    verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, &[other_log, verifier])).unwrap();
}

#[test]
fn without_a_log_policy_the_proof_is_not_needed() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    verify_detached(&sig, FIRMWARE, &Policy { log: None, ..policy(&anchors, &[]) }).unwrap();
}

#[test]
fn a_proof_for_another_certificate_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let (key, verifier) = log_key("ca.example/updates-log");
    let sig = pki.sign(FIRMWARE);
    // A real, logged certificate — but not the one that signed.
    let (_, other) = pki.key_and_cert(
        "other-signer",
        hsm::KeyAlgorithm::EcdsaP256,
        &pki.update_ca,
        &LeafSpec::code_signing("Release Signer 2"),
    );
    let proof = proof_for(&issuance_of(&other), &key);
    let why = not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, &[verifier])));
    assert!(why.contains("another certificate"), "{why}");
}

#[test]
fn a_certificate_made_with_the_ca_key_outside_the_log_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let (key, verifier) = log_key("ca.example/updates-log");
    // Signed directly with the Update Authority key: chains, codeSigning, in scope…
    let (rogue_key, rogue_cert) = pki.key_and_cert(
        "rogue",
        hsm::KeyAlgorithm::EcdsaP256,
        &pki.update_ca,
        &LeafSpec::code_signing("Rogue Signer"),
    );
    let sig = update_trust::sign_detached(
        FIRMWARE,
        rogue_key.as_ref(),
        &rogue_cert,
        std::slice::from_ref(&pki.update_ca.der),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let verifiers = [verifier];
    // …accepted by a device that does not require the log…
    verify_detached(&sig, FIRMWARE, &Policy { log: None, ..policy(&anchors, &verifiers) }).unwrap();
    // …refused by one that does: no proof, or the proof of a logged certificate.
    let why = not_logged(verify_detached_logged(&sig, FIRMWARE, None, &policy(&anchors, &verifiers)));
    assert!(why.contains("no tlog-proof"), "{why}");
    let why = not_logged(verify_detached(&sig, FIRMWARE, &policy(&anchors, &verifiers)));
    assert!(why.contains("no tlog-proof"), "{why}");
    let proof = proof_for(&issuance_of(&pki.signer_cert), &key);
    let why = not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, &verifiers)));
    assert!(why.contains("another certificate"), "{why}");
}

#[test]
fn a_proof_under_another_log_key_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let (_, trusted) = log_key("ca.example/updates-log");
    // Same log name, different key; and a different log altogether.
    let (impostor, _) = log_key("ca.example/updates-log");
    let (elsewhere, _) = log_key("other.example/log");
    let sig = pki.sign(FIRMWARE);
    let verifiers = [trusted];
    for key in [&impostor, &elsewhere] {
        let proof = proof_for(&issuance_of(&pki.signer_cert), key);
        let why = not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, &verifiers)));
        assert!(why.contains("does not verify under a trusted log key"), "{why}");
    }
}

#[test]
fn a_tampered_or_malformed_proof_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let (key, verifier) = log_key("ca.example/updates-log");
    let sig = pki.sign(FIRMWARE);
    let verifiers = [verifier];
    let why = not_logged(verify_detached_logged(&sig, FIRMWARE, Some("not a proof"), &policy(&anchors, &verifiers)));
    assert!(why.contains("does not parse"), "{why}");

    // The right entry, but the path belongs to a log where another entry sits at its
    // index: the leaf does not lead to the signed root.
    let proof = proof_for(&issuance_of(&pki.signer_cert), &key);
    let mut parsed = tlog::TlogProof::parse(&proof).unwrap();
    parsed.index = 0;
    let why =
        not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&parsed.to_text()), &policy(&anchors, &verifiers)));
    assert!(why.contains("does not verify"), "{why}");

    // An entry of another action naming the same fingerprint.
    let fp = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pki.signer_cert));
    let revoke = entry(2, "certificate.revoke", serde_json::json!({ "fingerprint": fp }));
    let proof = proof_for(&revoke, &key);
    let why = not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&proof), &policy(&anchors, &verifiers)));
    assert!(why.contains("not a certificate.issue entry"), "{why}");

    // No entry at all.
    let mut parsed = tlog::TlogProof::parse(&proof_for(&issuance_of(&pki.signer_cert), &key)).unwrap();
    parsed.extra = None;
    let why =
        not_logged(verify_detached_logged(&sig, FIRMWARE, Some(&parsed.to_text()), &policy(&anchors, &verifiers)));
    assert!(why.contains("no log entry"), "{why}");
}
