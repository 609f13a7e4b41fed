//! Signed notes, checkpoints and tlog-proofs: round trips with both key types, and
//! every way a note or proof can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use tlog::*;

struct Ed(Ed25519KeyPair, String);
impl NoteSigner for Ed {
    fn name(&self) -> &str {
        &self.1
    }
    fn key_id(&self) -> u32 {
        key_id_ed25519(&self.1, self.0.public_key().as_ref())
    }
    fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.0.sign(m).as_ref().to_vec())
    }
}

struct Ec(EcdsaKeyPair, String, Vec<u8>);
impl NoteSigner for Ec {
    fn name(&self) -> &str {
        &self.1
    }
    fn key_id(&self) -> u32 {
        key_id_ecdsa(&self.2)
    }
    fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.0.sign(&SystemRandom::new(), m).map_err(|e| SignError(e.to_string()))?.as_ref().to_vec())
    }
}

fn ed(name: &str) -> (Ed, Verifier) {
    let pair = Ed25519KeyPair::generate().unwrap();
    let v = Verifier::parse(&verifier_key(name, SIG_ED25519, pair.public_key().as_ref())).unwrap();
    (Ed(pair, name.into()), v)
}

fn ec(name: &str) -> (Ec, Verifier) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let v = Verifier::parse(&verifier_key(name, SIG_ECDSA, &spki)).unwrap();
    (Ec(pair, name.into(), spki), v)
}

fn checkpoint(size: u64) -> String {
    Checkpoint { origin: "example.com/log".into(), size, root: [size as u8; 32], extensions: vec![] }.to_text()
}

#[test]
fn notes_round_trip_with_both_key_types() {
    let (a, va) = ed("example.com/log");
    let (b, vb) = ec("example.com/log");
    let text = checkpoint(42);
    for (signer, v) in [(&a as &dyn NoteSigner, &va), (&b as &dyn NoteSigner, &vb)] {
        let note = sign_note(&text, &[signer]).unwrap();
        assert_eq!(open_note(&note, std::slice::from_ref(v)).unwrap(), text);
        assert_eq!(Checkpoint::parse(&open_note(&note, std::slice::from_ref(v)).unwrap()).unwrap().size, 42);
    }
    // Two signatures; either key opens it; an unknown key's signature is ignored.
    let both = sign_note(&text, &[&a, &b]).unwrap();
    assert!(open_note(&both, std::slice::from_ref(&vb)).is_ok());
    let (other, vo) = ed("example.com/log");
    assert_eq!(open_note(&both, std::slice::from_ref(&vo)), Err(Error::NoValidSignature));
    let with_unknown = sign_note(&text, &[&other, &a]).unwrap();
    assert!(open_note(&with_unknown, std::slice::from_ref(&va)).is_ok());
}

#[test]
fn bad_notes_are_refused() {
    let (a, va) = ed("example.com/log");
    let note = sign_note(&checkpoint(7), &[&a]).unwrap();
    // Edited text.
    let edited = note.replacen("\n7\n", "\n8\n", 1);
    assert_eq!(open_note(&edited, std::slice::from_ref(&va)), Err(Error::BadSignature("example.com/log".into())));
    // No signatures at all, control characters, no final newline, garbage lines.
    assert!(open_note(&checkpoint(7), std::slice::from_ref(&va)).is_err());
    assert!(open_note(&note.replacen("log", "l\u{7}g", 1), std::slice::from_ref(&va)).is_err());
    assert!(open_note(note.trim_end(), std::slice::from_ref(&va)).is_err());
    assert!(open_note(&format!("{note}garbage\n"), std::slice::from_ref(&va)).is_err());
    // A verifier key whose ID does not match its key.
    let vkey = verifier_key("example.com/log", SIG_ED25519, &[1u8; 32]);
    let (name, rest) = vkey.split_once('+').unwrap();
    let forged = format!("{name}+00000000+{}", rest.split_once('+').unwrap().1);
    assert!(Verifier::parse(&forged).is_err());
    for bad in ["", "a+b", "a b+00000000+AQ==", "x+0000000g+AQ==", "x+00000000+!!", "x+00000000+Aw=="] {
        assert!(Verifier::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn checkpoints_parse_strictly() {
    let text = checkpoint(1000);
    assert_eq!(Checkpoint::parse(&text).unwrap().to_text(), text);
    for bad in ["", "o\n1\n", "o\n01\nAAAA\n", "\n1\nAA==\n", "o\n1\nAAAA\n", "o\n-1\nAAAA\n", "o\n1\nAAAA"] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn tlog_proofs_round_trip_and_verify() {
    let (a, va) = ed("example.com/log");
    let leaves: Vec<Hash> = (0..13u8).map(|i| leaf_hash(&[i])).collect();
    let mut tiles = TileHashes::default();
    tiles.insert(TileId { level: 0, index: 0, width: 13 }, leaves.clone()).unwrap();
    let root = tiles.root(13).unwrap();
    let cp = Checkpoint { origin: "example.com/log".into(), size: 13, root, extensions: vec![] };
    let note = sign_note(&cp.to_text(), &[&a]).unwrap();
    let proof =
        TlogProof { extra: Some(vec![5]), index: 5, hashes: tiles.inclusion_proof(5, 13).unwrap(), checkpoint: note };
    let parsed = TlogProof::parse(&proof.to_text()).unwrap();
    assert_eq!(parsed, proof);
    assert_eq!(parsed.verify(&leaves[5], std::slice::from_ref(&va), "example.com/log").unwrap(), cp);
    // Another entry, another log, another key, a moved index.
    assert_eq!(parsed.verify(&leaves[6], std::slice::from_ref(&va), "example.com/log"), Err(Error::InclusionMismatch));
    assert!(matches!(
        parsed.verify(&leaves[5], std::slice::from_ref(&va), "other/log"),
        Err(Error::WrongOrigin { .. })
    ));
    let (_, vb) = ed("example.com/log");
    assert_eq!(parsed.verify(&leaves[5], &[vb], "example.com/log"), Err(Error::NoValidSignature));
    let moved = TlogProof { index: 4, ..parsed.clone() };
    assert!(moved.verify(&leaves[5], std::slice::from_ref(&va), "example.com/log").is_err());
    for bad in [
        "",
        "c2sp.org/tlog-proof@v1\nindex 01\n\nx",
        "c2sp.org/tlog-proof@v2\nindex 1\n\nx",
        "c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx",
    ] {
        assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
    }
}
