//! What a monitor and a device read from the outside: a signed note (the checkpoint a
//! log serves), the checkpoint text inside it, and a tlog-proof. Never a panic; what
//! parses prints back to the same text; a note never opens without a signature by the
//! one trusted key (the fuzzer cannot forge Ed25519, so an open note here is a bug).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlog::{open_note, verifier_key, Checkpoint, TlogProof, Verifier, SIG_ED25519};

/// The RFC 8032 test-vector 1 Ed25519 public key: whoever forges a signature for it
/// from fuzzed bytes has broken Ed25519 (or found our bug).
const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn verifier() -> Verifier {
    let key: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&PUBLIC_KEY[2 * i..2 * i + 2], 16).unwrap()).collect();
    Verifier::parse(&verifier_key("example.com/log", SIG_ED25519, &key)).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert!(open_note(text, &[verifier()]).is_err(), "opened without a signature: {text:?}");
    if let Ok(c) = Checkpoint::parse(text) {
        assert_eq!(c.to_text(), text);
    }
    if let Ok(p) = TlogProof::parse(text) {
        assert_eq!(p.to_text(), text);
        assert!(p.hashes.len() <= 64);
    }
    let _ = Verifier::parse(text);
});
