//! HTTP credentials for provisioning stations whose profile allows them (RFC 7030
//! §3.2.3 permits HTTP authentication; mTLS remains the primary method).
//!
//! Each station may hold one random secret, shown once when created and stored only
//! as an Argon2id hash. Clients send it as `Authorization: Basic base64(name:secret)`
//! or `Authorization: Bearer name.secret`. Verification recomputes the hash and
//! compares in constant time (password-hash's `Output` equality), on the blocking pool:
//! Argon2 is deliberately slow.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use zeroize::Zeroizing;

/// OWASP's minimum for Argon2id (19 MiB, 2 passes): these are random 128-bit secrets,
/// not human passwords, so the cost only needs to defeat bulk guessing of a leaked
/// hash, and it is paid on every request that uses a credential.
fn hasher() -> Result<Argon2<'static>, String> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A new random secret (32 hex digits) and its PHC hash for storage.
pub fn new_secret() -> Result<(Zeroizing<String>, String), String> {
    let secret = Zeroizing::new(hex::encode(rand::random::<[u8; 16]>()));
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    let phc = hasher()?.hash_password(secret.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string();
    Ok((secret, phc))
}

/// Whether `secret` matches the stored hash (false for a malformed hash).
pub fn verify(phc: &str, secret: &[u8]) -> bool {
    match (PasswordHash::new(phc), hasher()) {
        (Ok(hash), Ok(h)) => h.verify_password(secret, &hash).is_ok(),
        _ => false,
    }
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

    #[test]
    fn secrets_verify_only_themselves() {
        let (secret, phc) = new_secret().unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains(secret.as_str()));
        assert!(verify(&phc, secret.as_bytes()));
        assert!(!verify(&phc, b"0123456789abcdef0123456789abcdef"));
        assert!(!verify("not a hash", secret.as_bytes()));
        let (other, _) = new_secret().unwrap();
        assert_ne!(secret, other);
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
