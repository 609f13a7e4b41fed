//! Our signed notes and checkpoints against an independent implementation: `signed_note`
//! 0.2 and `tlog_tiles` 0.2 (cloudflare/azul, ports of golang.org/x/mod/sumdb/note and the
//! C2SP checkpoint), whose Ed25519 is ed25519-dalek's where ours is aws-lc's.
//!
//! They implement Ed25519 notes (type 0x01) only, so only those are cross-checked; that they
//! refuse our ECDSA (0x02) keys and ignore our ECDSA signatures is pinned at the end.
//!
//! Known-answer tests, each copied from the source named at it:
//! - the Go sumdb/note examples (PeterNeumann, EnochRoot),
//! - the C2SP signed-note verifier-key example (example.com/foo),
//! - the C2SP tlog-checkpoint example text (example.com/behind-the-sofa),
//! - RFC 8032 §7.1 TEST 1 (the key pair; its seed is one of the fixed test keys).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signed_note as sn;
use sn::Verifier as _;
use tlog::{
    key_id_ecdsa, key_id_ed25519, leaf_hash, open_note, sign_note, verifier_key, Checkpoint, Error, NoteSigner,
    SignError, TileHashes, TileId, TlogProof, Verifier, SIG_ECDSA, SIG_ED25519,
};
use tlog_tiles as tt;

/// RFC 8032 §7.1 TEST 1: the secret key (seed) and the public key it gives.
const RFC8032_SEED: [u8; 32] = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const RFC8032_PUBLIC: [u8; 32] = hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
/// RFC 8032 §7.1 TEST 1: the signature of the empty message.
const RFC8032_SIG_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Our side: an Ed25519 note signer on aws-lc, from a 32-byte seed.
struct Ed {
    pair: Ed25519KeyPair,
    name: String,
}

impl Ed {
    fn new(name: &str, seed: &[u8; 32]) -> Self {
        Self { pair: Ed25519KeyPair::from_seed_unchecked(seed).unwrap(), name: name.into() }
    }

    fn public(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    fn vkey(&self) -> String {
        verifier_key(&self.name, SIG_ED25519, &self.public())
    }

    fn verifier(&self) -> Verifier {
        Verifier::parse(&self.vkey()).unwrap()
    }
}

impl NoteSigner for Ed {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        key_id_ed25519(&self.name, &self.public())
    }
    fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.pair.sign(m).as_ref().to_vec())
    }
}

/// An RNG that hands out one fixed 32-byte seed, so that `signed_note::generate_key` (which
/// draws exactly the Ed25519 seed from it) makes the key of that seed.
struct FixedSeed([u8; 32]);

impl rand_core::RngCore for FixedSeed {
    fn next_u32(&mut self) -> u32 {
        unreachable!("generate_key only fills bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("generate_key only fills bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert_eq!(dest.len(), 32, "an Ed25519 seed");
        dest.copy_from_slice(&self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedSeed {}

/// Their side: signer and verifier, and the signer and verifier keys, all made by them.
struct Theirs {
    skey: String,
    vkey: String,
    signer: sn::StandardSigner,
    verifier: sn::StandardVerifier,
}

fn theirs(name: &str, seed: &[u8; 32]) -> Theirs {
    let (skey, vkey) = sn::generate_key(&mut FixedSeed(*seed), name);
    let signer = sn::StandardSigner::new(&skey).unwrap();
    let verifier = sn::StandardVerifier::new(&vkey).unwrap();
    Theirs { skey, vkey, signer, verifier }
}

fn their_list(vs: &[&sn::StandardVerifier]) -> sn::VerifierList {
    sn::VerifierList::new(vs.iter().map(|v| Box::new((*v).clone()) as Box<dyn sn::Verifier>).collect())
}

/// Their signature of `text`, as a note.
fn their_sign(text: &str, signers: &[&sn::StandardSigner]) -> String {
    let mut n = sn::Note::new(text.as_bytes(), &[]).unwrap();
    let signers: Vec<&dyn sn::Signer> = signers.iter().map(|s| *s as &dyn sn::Signer).collect();
    n.add_sigs(&signers).unwrap();
    String::from_utf8(n.to_bytes()).unwrap()
}

/// Their verification: the text and the (name, key ID) of the verified signatures.
fn their_open(note: &str, vs: &[&sn::StandardVerifier]) -> Result<(String, Vec<(String, u32)>), sn::NoteError> {
    let n = sn::Note::from_bytes(note.as_bytes())?;
    let (verified, _) = n.verify(&their_list(vs))?;
    let text = String::from_utf8(n.text().to_vec()).unwrap();
    Ok((text, verified.iter().map(|s| (s.name().to_string(), s.id())).collect()))
}

fn seeds() -> Vec<[u8; 32]> {
    vec![RFC8032_SEED, [0u8; 32], [0x5a; 32], *b"cross-check seed, 32 bytes long!"]
}

const NAMES: [&str; 4] = ["example.com/log", "PeterNeumann", "devices.example/pki/log-2026", "ünïcødé/é"];

#[test]
fn verifier_keys_and_key_ids_agree() {
    for seed in seeds() {
        for name in NAMES {
            let ours = Ed::new(name, &seed);
            let t = theirs(name, &seed);
            // The same string, from each side's own code.
            assert_eq!(ours.vkey(), t.vkey, "{name}");
            // Each parses the other's, to the same name and key ID.
            let v = Verifier::parse(&t.vkey).unwrap();
            let tv = sn::StandardVerifier::new(&ours.vkey()).unwrap();
            assert_eq!((v.name(), v.key_id()), (tv.name(), tv.key_id()));
            assert_eq!(v.key_id(), t.verifier.key_id());
            assert_eq!(v.key_id(), ours.key_id());
            let mut typed = vec![SIG_ED25519];
            typed.extend(ours.public());
            assert_eq!(sn::key_id(name, &typed), key_id_ed25519(name, &ours.public()));
            // Their signer key holds the seed: type byte then the 32 bytes.
            let b64 = t.skey.splitn(5, '+').nth(4).unwrap();
            assert_eq!(STANDARD.decode(b64).unwrap(), [&[SIG_ED25519][..], &seed].concat());
        }
    }
    // A key ID that is not the key's, a name with a space or a '+': refused by both.
    let good = Ed::new("example.com/log", &RFC8032_SEED).vkey();
    let (name, rest) = good.split_once('+').unwrap();
    let (id, key) = rest.split_once('+').unwrap();
    let wrong_id = format!("{name}+{:08x}+{key}", u32::from_str_radix(id, 16).unwrap() ^ 1);
    for bad in [
        wrong_id,
        format!("example.com/a b+{id}+{key}"),
        format!("{name}+{}+{key}", &id[..7]),
        format!("{name}+{id}+{}", &key[..key.len() - 4]),
        format!("{name}{id}+{key}"),
        String::new(),
    ] {
        assert!(Verifier::parse(&bad).is_err(), "ours took {bad}");
        assert!(sn::StandardVerifier::new(&bad).is_err(), "theirs took {bad}");
    }
}

#[test]
fn notes_signed_by_either_open_in_both() {
    let texts = [
        "example.com/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".to_string(),
        "one line\n".to_string(),
        "a text\n\nwith an empty line\n".to_string(),
        "ünïcødé — text\n".to_string(),
        format!("{}\n", "x".repeat(5000)),
    ];
    for seed in seeds() {
        for name in NAMES {
            let ours = Ed::new(name, &seed);
            let t = theirs(name, &seed);
            let id = ours.key_id();
            for text in &texts {
                let our_note = sign_note(text, &[&ours]).unwrap();
                let their_note = their_sign(text, &[&t.signer]);
                // Ed25519 is deterministic: the very same bytes.
                assert_eq!(our_note, their_note, "{name} {text:?}");
                // Ours opens in theirs (with their verifier, from their key) ...
                assert_eq!(their_open(&our_note, &[&t.verifier]).unwrap(), (text.clone(), vec![(name.into(), id)]));
                // ... and with their verifier parsed from our key string.
                let tv = sn::StandardVerifier::new(&ours.vkey()).unwrap();
                assert_eq!(their_open(&our_note, &[&tv]).unwrap().0, *text);
                // Theirs opens in ours, with ours parsed from their key string.
                let v = Verifier::parse(&t.vkey).unwrap();
                assert_eq!(open_note(&their_note, std::slice::from_ref(&v)).unwrap(), *text);
            }
        }
    }
}

/// Flips one bit of the signature bytes (after the key ID) of the first signature line.
fn flip_signature(note: &str, byte: usize) -> String {
    let (head, line) = note.trim_end().rsplit_once('\n').unwrap();
    let (prefix, b64) = line.rsplit_once(' ').unwrap();
    let mut sig = STANDARD.decode(b64).unwrap();
    sig[4 + byte] ^= 0x01;
    format!("{head}\n{prefix} {}\n", STANDARD.encode(sig))
}

#[test]
fn tampered_notes_fail_in_both() {
    let name = "example.com/log";
    let ours = Ed::new(name, &RFC8032_SEED);
    let t = theirs(name, &RFC8032_SEED);
    let v = ours.verifier();
    let text = Checkpoint { origin: name.into(), size: 7, root: leaf_hash(b"r"), extensions: vec![] }.to_text();
    let our_note = sign_note(&text, &[&ours]).unwrap();
    let their_note = their_sign(&text, &[&t.signer]);
    for note in [&our_note, &their_note] {
        assert!(open_note(note, std::slice::from_ref(&v)).is_ok());
        assert!(their_open(note, &[&t.verifier]).is_ok());

        // Edited text.
        let edited = note.replacen("\n7\n", "\n8\n", 1);
        assert_eq!(open_note(&edited, std::slice::from_ref(&v)), Err(Error::BadSignature(name.into())));
        assert!(matches!(their_open(&edited, &[&t.verifier]), Err(sn::NoteError::InvalidSignature { .. })));

        // A flipped bit in the signature, at its start, middle and end.
        for byte in [0, 31, 63] {
            let bad = flip_signature(note, byte);
            assert_eq!(open_note(&bad, std::slice::from_ref(&v)), Err(Error::BadSignature(name.into())), "{byte}");
            assert!(matches!(their_open(&bad, &[&t.verifier]), Err(sn::NoteError::InvalidSignature { .. })));
        }

        // A truncated signature.
        let (head, line) = note.trim_end().rsplit_once('\n').unwrap();
        let (prefix, b64) = line.rsplit_once(' ').unwrap();
        let sig = STANDARD.decode(b64).unwrap();
        let short = format!("{head}\n{prefix} {}\n", STANDARD.encode(&sig[..sig.len() - 1]));
        assert!(open_note(&short, std::slice::from_ref(&v)).is_err());
        assert!(their_open(&short, &[&t.verifier]).is_err());

        // Another key ID in the line: an unknown key to both, so no known key signed it.
        let mut other_id = sig.clone();
        other_id[0] ^= 1;
        let unknown = format!("{head}\n{prefix} {}\n", STANDARD.encode(&other_id));
        assert_eq!(open_note(&unknown, std::slice::from_ref(&v)), Err(Error::NoValidSignature));
        assert!(matches!(their_open(&unknown, &[&t.verifier]), Err(sn::NoteError::UnverifiedNote)));

        // Another name on the line: likewise.
        let renamed = note.replacen("— example.com/log ", "— example.com/other ", 1);
        assert_eq!(open_note(&renamed, std::slice::from_ref(&v)), Err(Error::NoValidSignature));
        assert!(matches!(their_open(&renamed, &[&t.verifier]), Err(sn::NoteError::UnverifiedNote)));

        // Another key of the same name: unknown to both.
        let other = theirs(name, &[9u8; 32]);
        let ov = Verifier::parse(&other.vkey).unwrap();
        assert_eq!(open_note(note, std::slice::from_ref(&ov)), Err(Error::NoValidSignature));
        assert!(matches!(their_open(note, &[&other.verifier]), Err(sn::NoteError::UnverifiedNote)));

        // Malformed: a control character, no final newline, no blank line.
        for bad in [note.replacen("log", "l\u{7}g", 1), note.trim_end().to_string(), note.replacen("\n\n", "\n", 1)] {
            assert!(open_note(&bad, std::slice::from_ref(&v)).is_err(), "{bad:?}");
            assert!(their_open(&bad, &[&t.verifier]).is_err(), "{bad:?}");
        }
    }
}

#[test]
fn notes_with_signatures_from_both_sides() {
    let ours = Ed::new("example.com/log", &RFC8032_SEED);
    let witness = theirs("witness.example/w1", &[3u8; 32]);
    let text = "example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    // We sign; they add a signature to our note.
    let ours_first = sign_note(text, &[&ours]).unwrap();
    let mut n = sn::Note::from_bytes(ours_first.as_bytes()).unwrap();
    n.add_sigs(&[&witness.signer]).unwrap();
    let both = String::from_utf8(n.to_bytes()).unwrap();
    // The same bytes as ours signing with both keys.
    let their_key_ours = Ed::new("witness.example/w1", &[3u8; 32]);
    assert_eq!(both, sign_note(text, &[&ours, &their_key_ours]).unwrap());
    // Either key opens it on either side; the other signature is ignored.
    let tv = sn::StandardVerifier::new(&ours.vkey()).unwrap();
    for (ov, tv) in [(ours.verifier(), &tv), (Verifier::parse(&witness.vkey).unwrap(), &witness.verifier)] {
        assert_eq!(open_note(&both, std::slice::from_ref(&ov)).unwrap(), text);
        let (t, verified) = their_open(&both, &[tv]).unwrap();
        assert_eq!((t.as_str(), verified.len()), (text, 1));
    }
    assert_eq!(open_note(&both, &[ours.verifier(), Verifier::parse(&witness.vkey).unwrap()]).unwrap(), text);
    assert_eq!(their_open(&both, &[&tv, &witness.verifier]).unwrap().1.len(), 2);
}

// Known answers.

/// Go, golang.org/x/mod/sumdb/note, the package example (ExampleSign, ExampleOpen,
/// ExampleSign_add_signatures): copied from golang/go src/cmd/go/internal/note/example_test.go
/// (the same examples as x/mod's sumdb/note/example_test.go) and identical in the doc and
/// tests of signed_note 0.2.0 (src/lib.rs).
const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str =
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
/// ExampleSign_add_signatures: the key GenerateKey makes from an all-zero random source.
const ENOCH_SIG: &str =
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
/// EnochRoot's verifier key: signed_note 0.2.0 src/lib.rs, test_open (x/mod's note_test.go).
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

#[test]
fn go_sumdb_note_examples() {
    let peter_note = format!("{PETER_TEXT}\n{PETER_SIG}");
    // The signer key is type byte 0x01 then the Ed25519 seed (the base64 holds a '+').
    let typed = STANDARD.decode(PETER_SKEY.splitn(5, '+').nth(4).unwrap()).unwrap();
    assert_eq!(typed[0], SIG_ED25519);
    let peter = Ed::new("PeterNeumann", &typed[1..].try_into().unwrap());
    assert_eq!(peter.vkey(), PETER_VKEY);
    assert_eq!(peter.key_id(), 0xc74f_20a3);
    // ExampleSign: our signature is Go's, byte for byte.
    assert_eq!(sign_note(PETER_TEXT, &[&peter]).unwrap(), peter_note);
    // ExampleOpen, on both sides.
    let v = Verifier::parse(PETER_VKEY).unwrap();
    assert_eq!((v.name(), v.key_id()), ("PeterNeumann", 0xc74f_20a3));
    assert_eq!(open_note(&peter_note, std::slice::from_ref(&v)).unwrap(), PETER_TEXT);
    let tv = sn::StandardVerifier::new(PETER_VKEY).unwrap();
    assert_eq!(
        their_open(&peter_note, &[&tv]).unwrap(),
        (PETER_TEXT.to_string(), vec![("PeterNeumann".to_string(), 0xc74f_20a3)])
    );
    // Their signer from Go's signer key, likewise.
    let ts = sn::StandardSigner::new(PETER_SKEY).unwrap();
    assert_eq!(their_sign(PETER_TEXT, &[&ts]), peter_note);

    // ExampleSign_add_signatures: EnochRoot's key is the all-zero seed.
    let enoch = Ed::new("EnochRoot", &[0u8; 32]);
    assert_eq!(enoch.vkey(), ENOCH_VKEY);
    assert_eq!(theirs("EnochRoot", &[0u8; 32]).vkey, ENOCH_VKEY);
    let both = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(sign_note(PETER_TEXT, &[&peter, &enoch]).unwrap(), both);
    let ev = Verifier::parse(ENOCH_VKEY).unwrap();
    assert_eq!(open_note(&both, std::slice::from_ref(&ev)).unwrap(), PETER_TEXT);
    assert_eq!(open_note(&both, &[v, ev]).unwrap(), PETER_TEXT);
    let tev = sn::StandardVerifier::new(ENOCH_VKEY).unwrap();
    assert_eq!(their_open(&both, &[&tv, &tev]).unwrap().1.len(), 2);
}

/// C2SP signed-note, "Verifier keys" → "Example": copied from signed-note.md as in the
/// fork tysonmalone69-gif/C2SP at c8760d3db28ea2ad2effe2455371e1672d104dd8 (the stored copy
/// of C2SP/C2SP predates the example); the signature verifying under the key is its own check.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

#[test]
fn c2sp_signed_note_example() {
    let v = Verifier::parse(SPEC_VKEY).unwrap();
    assert_eq!((v.name(), v.key_id()), ("example.com/foo", 0x530d_903a));
    assert_eq!(open_note(SPEC_NOTE, std::slice::from_ref(&v)).unwrap(), "This is an example message.\n");
    let tv = sn::StandardVerifier::new(SPEC_VKEY).unwrap();
    assert_eq!(their_open(SPEC_NOTE, &[&tv]).unwrap().0, "This is an example message.\n");
    // Our encoding of that key is the spec's string.
    let typed = STANDARD.decode(SPEC_VKEY.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(verifier_key("example.com/foo", typed[0], &typed[1..]), SPEC_VKEY);
    // And a changed message no longer verifies, in either.
    let edited = SPEC_NOTE.replacen("an example", "an exemple", 1);
    assert!(open_note(&edited, std::slice::from_ref(&v)).is_err());
    assert!(their_open(&edited, &[&tv]).is_err());
}

/// C2SP tlog-checkpoint, the example at the top of tlog-checkpoint.md (C2SP/C2SP at
/// 2793893976c835db049c194d8f2c4f946dcb70ba). Its key is not published, so: the text parses
/// the same in both, and the note is well-formed to both (signed by no key they know).
const SOFA_TEXT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const SOFA_SIG: &str = "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

#[test]
fn c2sp_checkpoint_example() {
    let cp = Checkpoint::parse(SOFA_TEXT).unwrap();
    let tcp = tt::Checkpoint::from_bytes(SOFA_TEXT.as_bytes()).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size, cp.root), (tcp.origin(), tcp.size(), tcp.hash().0));
    assert_eq!((cp.origin.as_str(), cp.size), ("example.com/behind-the-sofa", 20_852_163));
    assert_eq!(cp.to_text(), SOFA_TEXT);
    assert_eq!(tcp.to_bytes(), SOFA_TEXT.as_bytes());

    let note = format!("{SOFA_TEXT}\n{SOFA_SIG}");
    let stranger = Ed::new("example.com/behind-the-sofa", &RFC8032_SEED);
    assert_eq!(open_note(&note, &[stranger.verifier()]), Err(Error::NoValidSignature));
    let n = sn::Note::from_bytes(note.as_bytes()).unwrap();
    assert_eq!(n.text(), SOFA_TEXT.as_bytes());
    let tv = sn::StandardVerifier::new(&stranger.vkey()).unwrap();
    assert!(matches!(n.verify(&their_list(&[&tv])), Err(sn::NoteError::UnverifiedNote)));
}

/// RFC 8032 §7.1 TEST 1 (the RFC's text; the same bytes in many implementations' tests):
/// the key pair of the seed, on both sides, and the signature of the empty message.
#[test]
fn rfc8032_test_1() {
    let ours = Ed::new("k", &RFC8032_SEED);
    assert_eq!(ours.public(), RFC8032_PUBLIC);
    assert_eq!(ours.sign(b"").unwrap(), unhex(RFC8032_SIG_EMPTY));
    let t = theirs("k", &RFC8032_SEED);
    let typed = STANDARD.decode(t.vkey.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(typed, [&[SIG_ED25519][..], &RFC8032_PUBLIC].concat());
    assert_eq!(sn::Signer::sign(&t.signer, b"").unwrap(), unhex(RFC8032_SIG_EMPTY));
}

// Checkpoints.

#[test]
fn checkpoints_parse_the_same_both_ways() {
    let cases: Vec<(String, u64, tlog::Hash, Vec<String>)> = vec![
        ("example.com/log".into(), 0, tlog::EMPTY_ROOT, vec![]),
        ("example.com/log".into(), 1, leaf_hash(b"a"), vec![]),
        ("devices.example/pki/log-2026".into(), u64::MAX, [0xff; 32], vec![]),
        ("o".into(), 123_456_789, leaf_hash(b"b"), vec!["ext one".into(), "— ext two, with a dash".into()]),
        ("ünïcødé".into(), 42, leaf_hash(b"c"), vec!["x".into()]),
    ];
    for (origin, size, root, extensions) in cases {
        let ours = Checkpoint { origin: origin.clone(), size, root, extensions: extensions.clone() };
        let text = ours.to_text();
        // Ours in theirs.
        let t = tt::Checkpoint::from_bytes(text.as_bytes()).unwrap();
        assert_eq!((t.origin(), t.size(), t.hash().0), (origin.as_str(), size, root));
        let ext: String = extensions.iter().map(|e| format!("{e}\n")).collect();
        assert_eq!(t.extension(), ext);
        assert_eq!(t.to_bytes(), text.as_bytes());
        // Theirs in ours.
        let t = tt::Checkpoint::new(&origin, size, tt::Hash(root), &ext).unwrap();
        let back = Checkpoint::parse(std::str::from_utf8(&t.to_bytes()).unwrap()).unwrap();
        assert_eq!(back, ours);
    }
    // A control character in the origin: both parsers take it (neither checks; a signed note
    // cannot carry one, which both note parsers refuse).
    let cr = format!("o\r\n1\n{root}\n", root = STANDARD.encode(leaf_hash(b"r")));
    assert_eq!(Checkpoint::parse(&cr).unwrap().origin, "o\r");
    assert_eq!(tt::Checkpoint::from_bytes(cr.as_bytes()).unwrap().origin(), "o\r");
    // What either refuses, both refuse.
    let root = STANDARD.encode(leaf_hash(b"r"));
    let short = STANDARD.encode([0u8; 31]);
    // The same 32 bytes, but with nonzero bits after the last (base64 of 32 bytes ends in
    // one padding '=': its last digit carries 2 bits of padding).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut non_canonical = root.clone().into_bytes();
    let last = non_canonical.len() - 2;
    let digit = ALPHABET.iter().position(|&c| c == non_canonical[last]).unwrap();
    non_canonical[last] = ALPHABET[digit ^ 1];
    let non_canonical = String::from_utf8(non_canonical).unwrap();
    assert_ne!(non_canonical, root);
    for bad in [
        String::new(),
        format!("\n1\n{root}\n"),
        format!("o\n01\n{root}\n"),
        format!("o\n+1\n{root}\n"),
        format!("o\n-1\n{root}\n"),
        format!("o\n0x10\n{root}\n"),
        format!("o\n18446744073709551616\n{root}\n"),
        format!("o\n1\n{short}\n"),
        format!("o\n1\n{}\n", root.trim_end_matches('=')),
        format!("o\n1\n{non_canonical}\n"),
        format!("o\n1\n {root}\n"),
        format!("o\n1\n{root}"),
        format!("o\n1\n{root}\next\n\n"),
        format!("o\n1\n{root}\next"),
        "o\n1\n".to_string(),
    ] {
        assert!(Checkpoint::parse(&bad).is_err(), "ours took {bad:?}");
        assert!(tt::Checkpoint::from_bytes(bad.as_bytes()).is_err(), "theirs took {bad:?}");
    }
}

/// A whole checkpoint round trip across the two: their tree, their checkpoint text, their
/// signature; our tlog-proof verifies against it. And ours, signed by us, in theirs.
#[test]
fn signed_checkpoints_cross_over() {
    let origin = "example.com/log";
    let t = theirs(origin, &RFC8032_SEED);
    let v = Verifier::parse(&t.vkey).unwrap();

    // Their tree of 13 entries, and its checkpoint with an extension line, signed by them.
    let entries: Vec<Vec<u8>> = (0..13u8).map(|i| vec![i; 3]).collect();
    let mut storage = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let new = tt::stored_hashes(i as u64, e, &Stored(&storage)).unwrap();
        storage.extend(new);
    }
    let their_root = tt::tree_hash(13, &Stored(&storage)).unwrap();
    let their_cp = tt::Checkpoint::new(origin, 13, their_root, "ext 1\n").unwrap();
    let their_note = their_sign(std::str::from_utf8(&their_cp.to_bytes()).unwrap(), &[&t.signer]);

    // Our tlog-proof of entry 5 with our inclusion path, against their signed checkpoint.
    let leaves: Vec<tlog::Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let mut tiles = TileHashes::default();
    tiles.insert(TileId { level: 0, index: 0, width: 13 }, leaves.clone()).unwrap();
    let path = tiles.inclusion_proof(5, 13).unwrap();
    assert_eq!(path, tt::prove_record(13, 5, &Stored(&storage)).unwrap().iter().map(|h| h.0).collect::<Vec<_>>());
    let proof = TlogProof { extra: None, index: 5, hashes: path, checkpoint: their_note.clone() };
    let cp = TlogProof::parse(&proof.to_text()).unwrap().verify(&leaves[5], std::slice::from_ref(&v), origin).unwrap();
    assert_eq!((cp.size, cp.root, cp.extensions), (13, their_root.0, vec!["ext 1".to_string()]));

    // Our checkpoint, signed by us, opened and parsed by them.
    let ours = Ed::new(origin, &RFC8032_SEED);
    let our_cp =
        Checkpoint { origin: origin.into(), size: 13, root: tiles.root(13).unwrap(), extensions: vec!["ext 1".into()] };
    let our_note = sign_note(&our_cp.to_text(), &[&ours]).unwrap();
    assert_eq!(our_note, their_note, "the same checkpoint, key and so signature");
    let (text, _) = their_open(&our_note, &[&t.verifier]).unwrap();
    let parsed = tt::Checkpoint::from_bytes(text.as_bytes()).unwrap();
    assert_eq!(parsed, their_cp);
}

/// Their flat hash storage, as `tt::HashReader`.
struct Stored<'a>(&'a [tt::Hash]);

impl tt::HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tt::Hash>, tt::Error> {
        indexes.iter().map(|&i| self.0.get(i as usize).copied().ok_or(tt::Error::IndexesNotInTree)).collect()
    }
}

/// signed_note implements Ed25519 only: it refuses our ECDSA (type 0x02) verifier keys, and
/// treats our ECDSA signatures as by an unknown key.
#[test]
fn their_side_has_no_ecdsa() {
    let name = "example.com/log";
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let vkey = verifier_key(name, SIG_ECDSA, &spki);
    assert!(Verifier::parse(&vkey).is_ok());
    assert!(sn::StandardVerifier::new(&vkey).is_err());

    struct Ec(EcdsaKeyPair, Vec<u8>);
    impl NoteSigner for Ec {
        fn name(&self) -> &str {
            "example.com/log"
        }
        fn key_id(&self) -> u32 {
            key_id_ecdsa(&self.1)
        }
        fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SignError> {
            Ok(self.0.sign(&SystemRandom::new(), m).map_err(|e| SignError(e.to_string()))?.as_ref().to_vec())
        }
    }
    let ed = Ed::new(name, &RFC8032_SEED);
    let note = sign_note("text\n", &[&Ec(pair, spki), &ed]).unwrap();
    let t = theirs(name, &RFC8032_SEED);
    let n = sn::Note::from_bytes(note.as_bytes()).unwrap();
    let (verified, unverified) = n.verify(&their_list(&[&t.verifier])).unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 1));
    assert_eq!(unverified[0].id(), key_id_ecdsa(&pair_spki(&vkey)));
}

fn pair_spki(vkey: &str) -> Vec<u8> {
    STANDARD.decode(vkey.splitn(3, '+').nth(2).unwrap()).unwrap()[1..].to_vec()
}

/// Odd but possible notes: whether each side takes each one, side by side. Where the two
/// differ on purpose, that is pinned, with the reason.
#[test]
fn odd_notes_are_judged_alike() {
    let name = "example.com/log";
    let ours = Ed::new(name, &RFC8032_SEED);
    let t = theirs(name, &RFC8032_SEED);
    let v = ours.verifier();
    let text = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let note = sign_note(text, &[&ours]).unwrap();
    let sig = note.strip_prefix(text).unwrap().strip_prefix('\n').unwrap();
    let stranger = Ed::new("stranger.example", &[1u8; 32]);
    let stranger_sig = sign_note(text, &[&stranger]).unwrap().strip_prefix(text).unwrap()[1..].to_string();
    let cases: Vec<(&str, String, bool)> = vec![
        ("as signed", note.clone(), true),
        ("the same signature twice", format!("{note}{sig}"), true),
        ("an unknown key's signature first", format!("{text}\n{stranger_sig}{sig}"), true),
        ("an unknown key's signature only", format!("{text}\n{stranger_sig}"), false),
        ("two spaces after the name", note.replacen(&format!("{name} "), &format!("{name}  "), 1), false),
        ("a hyphen for the em dash", note.replacen("— ", "- ", 1), false),
        ("a blank line after the signatures", format!("{note}\n"), false),
        ("text after the signatures", format!("{note}x\n"), false),
        ("a tab in the text", note.replacen("log\n5", "log\t\n5", 1), false),
        ("CRLF line ends", note.replace('\n', "\r\n"), false),
        ("no signature lines", format!("{text}\n"), false),
        ("an empty signature", format!("{text}\n— {name} \n"), false),
        ("a signature of only a key ID", format!("{text}\n— {name} {}\n", STANDARD.encode([0u8; 4])), false),
    ];
    for (what, n, want) in cases {
        let ours_ok = open_note(&n, std::slice::from_ref(&v)).is_ok();
        let theirs_ok = their_open(&n, &[&t.verifier]).is_ok();
        assert_eq!((ours_ok, theirs_ok), (want, want), "{what}: {n:?}");
    }
    // Many signatures: C2SP asks verifiers to take at least 16; we take up to 64, they up to
    // 100. (A limit, not a disagreement on any note the spec requires to be accepted.)
    for (count, ours_ok, theirs_ok) in [(16, true, true), (64, true, true), (65, false, true), (101, false, false)] {
        let n = format!("{text}\n{}{sig}", stranger_sig.repeat(count - 1));
        assert_eq!(open_note(&n, std::slice::from_ref(&v)).is_ok(), ours_ok, "{count} signatures");
        assert_eq!(their_open(&n, &[&t.verifier]).is_ok(), theirs_ok, "{count} signatures");
    }
}
