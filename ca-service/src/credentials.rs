//! Random bearer secrets — admin API tokens and the HTTP credentials of provisioning
//! stations whose profile allows them (RFC 7030 §3.2.3 permits HTTP authentication;
//! mTLS remains the primary method) — and the server key they are checked with.
//!
//! A secret is 128 random bits, shown once when created and stored only as
//! `hmac-sha256$<key id>$<tag>`: HMAC-SHA-256 under the server's credential key of the
//! secret bound to what it belongs to (`token <id>` or `station <name>`), so a hash
//! copied to another row does not verify. These secrets are not passwords: a slow
//! password hash (Argon2id, 19 MiB per check) buys nothing against 128 random bits and
//! made every bogus token cost memory and milliseconds (DESIGN §8). A check is one
//! HMAC (about a microsecond) on the calling thread, compared in constant time, and
//! it is computed whether or not the token id or station exists, so an unknown one
//! looks like a wrong secret, also by timing.
//!
//! The credential key is 32 random bytes in `<data_dir>/credential-hmac.key` (hex,
//! mode 0600): made by `init`, or by the first command that needs it (`serve`,
//! `tokens create`, `stations add --with-secret`). A file that group or others can
//! read is refused. Instances that share one database must share this file too; a
//! hash made under another key is reported as such in the log.
//!
//! Hashes of earlier versions (Argon2id PHC strings) are refused, never checked: the
//! log names the token or station so the operator can re-create its secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use zeroize::Zeroizing;

/// File name of the credential key, in the data directory.
pub const KEY_FILE: &str = "credential-hmac.key";
/// Scheme prefix of a stored secret hash.
const SCHEME: &str = "hmac-sha256";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("credential key {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error(
        "credential key {}: readable by group or others (mode {mode:04o}); it must be 0600 (chmod 600 {})",
        path.display(), path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("credential key {}: expected {KEY_LEN} bytes (or {} hex digits)", path.display(), KEY_LEN * 2)]
    Malformed { path: PathBuf },
}

/// What a secret belongs to; part of what the tag covers.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// An admin API token, by its id.
    Token(&'a str),
    /// A provisioning station's HTTP credential, by the station's name.
    Station(&'a str),
}

/// The outcome of checking a secret against what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Nothing stored, or a different secret.
    Invalid,
    /// An Argon2id hash from an earlier version: never checked, the secret must be made anew.
    Legacy,
    /// Hashed under another credential key (another instance's, or a replaced file).
    OtherKey,
    /// Not a hash this or an earlier version writes.
    Malformed,
}

/// The server key that secret hashes are made and checked with. Never logged.
pub struct CredentialKey {
    key: hmac::Key,
    /// Short public identifier of the key, stored with each hash.
    id: String,
    /// A well-formed hash under this key that no secret has: what is parsed and
    /// compared when nothing is stored, so that costs the same as a wrong secret.
    nothing: String,
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl CredentialKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let id = hex::encode(&hmac::sign(&key, b"pki credential key id").as_ref()[..4]);
        let nothing = format!("{SCHEME}${id}${}", base64::engine::general_purpose::STANDARD_NO_PAD.encode([0u8; 32]));
        Self { key, id, nothing }
    }

    /// A fresh random key (tests; files are made by [`CredentialKey::load_or_create`]).
    pub fn random() -> Self {
        Self::from_bytes(&Zeroizing::new(rand::random::<[u8; KEY_LEN]>()))
    }

    /// The key's public identifier (8 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the key lives for a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// Reads the key of `data_dir`, creating it (0600; the directory 0700 if it is
    /// new) when there is none. Returns whether it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), KeyError> {
        let path = Self::path(data_dir);
        match Self::load(&path) {
            Err(KeyError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {}
            other => return other.map(|k| (k, false)),
        }
        match create_key_file(data_dir, &path) {
            Ok(()) => Self::load(&path).map(|k| (k, true)),
            // Another process made it first.
            Err(KeyError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load(&path).map(|k| (k, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a key file: 32 bytes, or 64 hex digits; refused if group or others may read it.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |cause| KeyError::Io { path: path.to_path_buf(), cause };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
        }
        let raw = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        let text = std::str::from_utf8(&raw).map(str::trim).unwrap_or_default();
        if raw.len() == KEY_LEN {
            bytes.copy_from_slice(&raw);
        } else if hex::decode_to_slice(text, &mut *bytes).is_err() {
            return Err(KeyError::Malformed { path: path.to_path_buf() });
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn tag(&self, subject: Subject<'_>, secret: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        match subject {
            Subject::Token(id) => {
                ctx.update(b"pki api token\0");
                ctx.update(id.as_bytes());
            }
            Subject::Station(name) => {
                ctx.update(b"pki station credential\0");
                ctx.update(name.as_bytes());
            }
        }
        ctx.update(b"\0");
        ctx.update(secret);
        ctx.sign()
    }

    /// The stored form of `secret`: `hmac-sha256$<key id>$<base64 tag>`.
    pub fn hash(&self, subject: Subject<'_>, secret: &[u8]) -> String {
        let tag = base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.tag(subject, secret));
        format!("{SCHEME}${}${tag}", self.id)
    }

    /// Checks `secret` against the stored hash (`None`: no such token or station, or
    /// no secret). The same work is done in every case — a stored form parsed (a
    /// placeholder when nothing is stored), one HMAC, one constant-time comparison —
    /// so whether anything is stored does not show in the time taken.
    pub fn verify(&self, stored: Option<&str>, subject: Subject<'_>, secret: &[u8]) -> Verdict {
        let tag = self.tag(subject, secret);
        let (expected, verdict) = match self.parse(stored.unwrap_or(&self.nothing)) {
            Ok(expected) if stored.is_some() => (expected, Verdict::Valid),
            Ok(expected) => (expected, Verdict::Invalid),
            // Compared against zeros when there is nothing to compare with.
            Err(v) => ([0u8; 32], v),
        };
        let equal = constant_time::verify_slices_are_equal(tag.as_ref(), &expected).is_ok();
        match verdict {
            Verdict::Valid if equal => Verdict::Valid,
            Verdict::Valid => Verdict::Invalid,
            other => other,
        }
    }

    fn parse(&self, stored: &str) -> Result<[u8; 32], Verdict> {
        if stored.starts_with("$argon2") {
            return Err(Verdict::Legacy);
        }
        let mut parts = stored.split('$');
        let (Some(SCHEME), Some(key_id), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Verdict::Malformed);
        };
        if key_id != self.id {
            return Err(Verdict::OtherKey);
        }
        let mut out = [0u8; 32];
        match base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(tag, &mut out) {
            Ok(32) => Ok(out),
            _ => Err(Verdict::Malformed),
        }
    }
}

/// Writes a new random key to `path` atomically (a complete file or none): written
/// to a temporary file in the same directory, then linked into place, which fails if
/// the name exists.
fn create_key_file(data_dir: &Path, path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |cause| KeyError::Io { path: path.to_path_buf(), cause };
    if !data_dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir).map_err(io)?;
    }
    let tmp = data_dir.join(format!(".{KEY_FILE}.{}", hex::encode(rand::random::<[u8; 8]>())));
    let text = Zeroizing::new(format!("{}\n", hex::encode(Zeroizing::new(rand::random::<[u8; KEY_LEN]>()))));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    written.map_err(io)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A new random secret (32 hex digits) and its stored form.
pub fn new_secret(key: &CredentialKey, subject: Subject<'_>) -> (Zeroizing<String>, String) {
    let secret = Zeroizing::new(hex::encode(rand::random::<[u8; 16]>()));
    let hash = key.hash(subject, secret.as_bytes());
    (secret, hash)
}

/// A station credential from an `Authorization` header.
#[derive(Debug)]
pub struct StationCredential {
    pub station: String,
    pub secret: Zeroizing<Vec<u8>>,
}

/// Parses `Basic base64(name:secret)` or `Bearer name.secret`; `None` if the header
/// is absent or of another scheme, `Err` if it is malformed.
pub fn parse_authorization(header: Option<&str>) -> Result<Option<StationCredential>, &'static str> {
    let Some(value) = header else { return Ok(None) };
    let (scheme, rest) = value.trim().split_once(' ').ok_or("malformed Authorization header")?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| "Basic credentials are not base64")?,
        );
        let colon = decoded.iter().position(|&b| b == b':').ok_or("Basic credentials lack ':'")?;
        let station = std::str::from_utf8(&decoded[..colon]).map_err(|_| "station name is not UTF-8")?.to_string();
        Ok(Some(StationCredential { station, secret: Zeroizing::new(decoded[colon + 1..].to_vec()) }))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let dot = rest.rfind('.').ok_or("Bearer token must be <station>.<secret>")?;
        Ok(Some(StationCredential {
            station: rest[..dot].to_string(),
            secret: Zeroizing::new(rest.as_bytes()[dot + 1..].to_vec()),
        }))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    #[test]
    fn secrets_verify_only_themselves() {
        let key = CredentialKey::random();
        let (secret, hash) = new_secret(&key, Subject::Token("0123456789abcdef"));
        assert!(hash.starts_with(&format!("hmac-sha256${}$", key.id())));
        assert!(!hash.contains(secret.as_str()));
        let token = Subject::Token("0123456789abcdef");
        assert_eq!(key.verify(Some(&hash), token, secret.as_bytes()), Verdict::Valid);
        // A wrong secret, a secret one character off, an empty one.
        assert_eq!(key.verify(Some(&hash), token, b"0123456789abcdef0123456789abcdef"), Verdict::Invalid);
        let mut off = secret.as_bytes().to_vec();
        off[31] ^= 1;
        assert_eq!(key.verify(Some(&hash), token, &off), Verdict::Invalid);
        assert_eq!(key.verify(Some(&hash), token, b""), Verdict::Invalid);
        // Nothing stored: invalid, whatever the secret.
        assert_eq!(key.verify(None, token, secret.as_bytes()), Verdict::Invalid);
        let (other, _) = new_secret(&key, token);
        assert_ne!(secret, other);
    }

    #[test]
    fn a_hash_is_bound_to_its_token_or_station() {
        let key = CredentialKey::random();
        let (secret, hash) = new_secret(&key, Subject::Token("0123456789abcdef"));
        assert_eq!(key.verify(Some(&hash), Subject::Token("fedcba9876543210"), secret.as_bytes()), Verdict::Invalid);
        assert_eq!(key.verify(Some(&hash), Subject::Station("0123456789abcdef"), secret.as_bytes()), Verdict::Invalid);
        let (secret, hash) = new_secret(&key, Subject::Station("line-1"));
        assert_eq!(key.verify(Some(&hash), Subject::Station("line-1"), secret.as_bytes()), Verdict::Valid);
        assert_eq!(key.verify(Some(&hash), Subject::Station("line-2"), secret.as_bytes()), Verdict::Invalid);
    }

    #[test]
    fn another_key_does_not_verify() {
        let (a, b) = (CredentialKey::random(), CredentialKey::random());
        assert_ne!(a.id(), b.id());
        let subject = Subject::Station("line-1");
        let (secret, hash) = new_secret(&a, subject);
        assert_eq!(b.verify(Some(&hash), subject, secret.as_bytes()), Verdict::OtherKey);
        // Even with the key id rewritten to b's, the tag is a's.
        let forged = hash.replace(a.id(), b.id());
        assert_eq!(b.verify(Some(&forged), subject, secret.as_bytes()), Verdict::Invalid);
        // The same bytes give the same key (and id).
        let bytes = [7u8; 32];
        let (c, d) = (CredentialKey::from_bytes(&bytes), CredentialKey::from_bytes(&bytes));
        assert_eq!(c.id(), d.id());
        assert_eq!(c.hash(subject, b"s"), d.hash(subject, b"s"));
    }

    #[test]
    fn legacy_and_malformed_hashes_are_refused_without_checking() {
        let key = CredentialKey::random();
        let s = Subject::Token("0123456789abcdef");
        assert_eq!(key.verify(Some(LEGACY), s, b"anything"), Verdict::Legacy);
        for bad in ["", "not a hash", "hmac-sha256$x", &format!("hmac-sha256${}$!!!", key.id())] {
            assert_eq!(key.verify(Some(bad), s, b"anything"), Verdict::Malformed, "{bad}");
        }
        let short = format!("hmac-sha256${}${}", key.id(), "AAAA");
        assert_eq!(key.verify(Some(&short), s, b"anything"), Verdict::Malformed);
        let long = key.hash(s, b"x") + "AAAA";
        assert_eq!(key.verify(Some(&long), s, b"x"), Verdict::Malformed);
    }

    /// The work done does not depend on what is stored: one HMAC and one fixed-length
    /// constant-time comparison in every case. A coarse check that an unknown id is
    /// not measurably cheaper or dearer than a wrong secret (both are microseconds;
    /// an Argon2id check was milliseconds).
    #[test]
    fn unknown_and_wrong_cost_the_same_and_little() {
        let key = CredentialKey::random();
        let s = Subject::Token("0123456789abcdef");
        let (_, hash) = new_secret(&key, s);
        let time = |stored: Option<&str>| {
            let started = std::time::Instant::now();
            for _ in 0..20_000 {
                std::hint::black_box(key.verify(std::hint::black_box(stored), s, b"0123456789abcdef0123456789abcdef"));
            }
            started.elapsed() / 20_000
        };
        let (unknown, wrong) = (time(None), time(Some(&hash)));
        eprintln!("verify: unknown {unknown:?}, wrong secret {wrong:?}");
        // Generous bounds for a debug build on a busy machine.
        assert!(unknown < std::time::Duration::from_micros(200), "{unknown:?}");
        assert!(wrong < std::time::Duration::from_micros(200), "{wrong:?}");
    }

    #[test]
    fn the_key_file_is_made_once_private_and_refused_when_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, created) = CredentialKey::load_or_create(&data).unwrap();
        assert!(created);
        let path = CredentialKey::path(&data);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        let (b, created) = CredentialKey::load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
        assert!(!format!("{a:?}").contains(&std::fs::read_to_string(&path).unwrap().trim()[..16]));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = CredentialKey::load_or_create(&data).unwrap_err();
        assert!(matches!(e, KeyError::Permissions { mode: 0o640, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "too short\n").unwrap();
        assert!(matches!(CredentialKey::load(&path), Err(KeyError::Malformed { .. })));
        // 32 raw bytes are accepted as well as hex.
        std::fs::write(&path, [9u8; 32]).unwrap();
        assert_eq!(CredentialKey::load(&path).unwrap().id(), CredentialKey::from_bytes(&[9u8; 32]).id());
    }

    #[test]
    fn authorization_headers_parse() {
        let basic = base64::engine::general_purpose::STANDARD.encode("line-1:s3cret:with-colon");
        let c = parse_authorization(Some(&format!("Basic {basic}"))).unwrap().unwrap();
        assert_eq!((c.station.as_str(), c.secret.as_slice()), ("line-1", &b"s3cret:with-colon"[..]));
        let c = parse_authorization(Some("bearer line.1.abcdef")).unwrap().unwrap();
        assert_eq!((c.station.as_str(), c.secret.as_slice()), ("line.1", &b"abcdef"[..]));
        assert!(parse_authorization(None).unwrap().is_none());
        assert!(parse_authorization(Some("Digest x")).unwrap().is_none());
        assert!(parse_authorization(Some("Basic !!!")).is_err());
        assert!(parse_authorization(Some("Basic")).is_err());
        assert!(parse_authorization(Some("Bearer nodot")).is_err());
    }
}
