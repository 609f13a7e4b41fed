//! C2SP signed-note: text signed by one or more keys, each signature line naming its
//! key by name and a 4-byte key ID.
//!
//! Two signature types: Ed25519 (0x01, what C2SP requires of public logs) and ECDSA
//! P-256 (0x02, as github.com/transparency-dev/witness implements it: an ASN.1 DER
//! signature over SHA-256 of the text, the key ID the first four bytes of SHA-256 of
//! the key's SubjectPublicKeyInfo). A verifier key reads `name+keyid+base64(type ‖ key)`
//! (the key: 32 raw bytes for Ed25519, the DER SubjectPublicKeyInfo for ECDSA).

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{malformed, Error};

/// Signature type of Ed25519 notes.
pub const SIG_ED25519: u8 = 0x01;
/// Signature type of ECDSA notes.
pub const SIG_ECDSA: u8 = 0x02;

/// Largest note [`open_note`] reads, and most signature lines.
const MAX_NOTE_BYTES: usize = 1 << 20;
const MAX_SIGNATURES: usize = 64;

/// P-256 SubjectPublicKeyInfo: this prefix, then the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a signer could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

impl From<String> for SignError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A key that signs notes (an HSM key behind it, in the service).
pub trait NoteSigner {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// The signature over `message` in the form its type prescribes.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

fn first4(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4].
pub fn key_id_ed25519(name: &str, public_key: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 2 + public_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(SIG_ED25519);
    buf.extend_from_slice(public_key);
    first4(digest(&SHA256, &buf).as_ref())
}

/// SHA-256(SubjectPublicKeyInfo)[:4].
pub fn key_id_ecdsa(spki: &[u8]) -> u32 {
    first4(digest(&SHA256, spki).as_ref())
}

/// `name+keyid+base64(type ‖ key)`.
pub fn verifier_key(name: &str, sig_type: u8, key: &[u8]) -> String {
    let id = match sig_type {
        SIG_ECDSA => key_id_ecdsa(key),
        _ => key_id_ed25519(name, key),
    };
    let mut typed = vec![sig_type];
    typed.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", STANDARD.encode(typed))
}

/// A key that notes are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    sig_type: u8,
    /// The raw Ed25519 key, or the uncompressed P-256 point.
    key: Vec<u8>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl Verifier {
    /// Parses a verifier key `name+keyid+base64(type ‖ key)`, checking that the key ID
    /// is the one the key has.
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let bad = |why: &str| malformed("verifier key", why.to_string());
        let mut parts = vkey.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad("not name+keyid+key")),
        };
        if !valid_name(name) {
            return Err(bad("the name is empty or has spaces or '+'"));
        }
        if id.len() != 8 {
            return Err(bad("the key ID is not 8 hex digits"));
        }
        let key_id = u32::from_str_radix(id, 16).map_err(|_| bad("the key ID is not 8 hex digits"))?;
        let typed = STANDARD.decode(key).map_err(|_| bad("the key is not base64"))?;
        let (&sig_type, key) = typed.split_first().ok_or_else(|| bad("the key is empty"))?;
        let (computed, raw) = match sig_type {
            SIG_ED25519 if key.len() == 32 => (key_id_ed25519(name, key), key.to_vec()),
            SIG_ECDSA => {
                let point = key.strip_prefix(&P256_SPKI_PREFIX[..]).filter(|p| p.len() == 65 && p[0] == 4);
                let point = point.ok_or_else(|| bad("type 0x02 needs a P-256 SubjectPublicKeyInfo"))?;
                (key_id_ecdsa(key), point.to_vec())
            }
            SIG_ED25519 => return Err(bad("an Ed25519 key is 32 bytes")),
            other => return Err(malformed("verifier key", format!("unsupported signature type 0x{other:02x}"))),
        };
        if computed != key_id {
            return Err(bad("the key ID does not belong to the key"));
        }
        Ok(Self { name: name.to_string(), key_id, sig_type, key: raw })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let alg: &dyn aws_lc_rs::signature::VerificationAlgorithm = match self.sig_type {
            SIG_ED25519 => &ED25519,
            _ => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.key).verify(text, signature).is_ok()
    }
}

fn check_text(text: &str, what: &'static str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(malformed(what, "does not end in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed(what, "contains control characters"));
    }
    Ok(())
}

/// Signs `text` (which must end in a newline) with each signer.
pub fn sign_note(text: &str, signers: &[&dyn NoteSigner]) -> Result<String, Error> {
    check_text(text, "note text")?;
    let mut out = format!("{text}\n");
    for s in signers {
        let mut sig = s.key_id().to_be_bytes().to_vec();
        sig.extend(s.sign(text.as_bytes()).map_err(|e| Error::Sign(e.0))?);
        out.push_str(&format!("— {} {}\n", s.name(), STANDARD.encode(sig)));
    }
    Ok(out)
}

/// Checks a signed note against `verifiers` and returns its text: at least one known
/// key must have signed it, every signature by a known key must verify, and
/// signatures by unknown keys are ignored.
pub fn open_note(note: &str, verifiers: &[Verifier]) -> Result<String, Error> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(malformed("note", "too large"));
    }
    check_text(note, "note")?;
    let split = note.rfind("\n\n").ok_or_else(|| malformed("note", "no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let lines: Vec<&str> = sigs.strip_suffix('\n').unwrap_or(sigs).split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed("note", "too many signatures"));
    }
    let mut verified = 0;
    for line in lines {
        let rest =
            line.strip_prefix("— ").ok_or_else(|| malformed("note", "a signature line does not start with '— '"))?;
        let (name, sig) = rest.split_once(' ').ok_or_else(|| malformed("note", "a signature line has no signature"))?;
        let sig = STANDARD.decode(sig).map_err(|_| malformed("note", "a signature is not base64"))?;
        if !valid_name(name) || sig.len() < 5 {
            return Err(malformed("note", "a signature line is malformed"));
        }
        let id = first4(&sig);
        for v in verifiers.iter().filter(|v| v.name == name && v.key_id == id) {
            if !v.verify(text.as_bytes(), &sig[4..]) {
                return Err(Error::BadSignature(name.to_string()));
            }
            verified += 1;
        }
    }
    if verified == 0 {
        return Err(Error::NoValidSignature);
    }
    Ok(text.to_string())
}
