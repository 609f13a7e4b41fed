//! The first stage: who is asking. A client certificate is accepted only if it is one
//! we issued (found by its SHA-256), from the expected CA, valid now, of the expected
//! profile kind, and still `valid` in our records: revocation bites at request time.
//! And the per-station rate limit, which needs to know the station.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ra::{CertState, KnownCertificate, ProfileKind, Refusal};

/// Checks the stored record found under the client certificate's SHA-256. The TLS
/// handshake proved the client holds that certificate's key, and a certificate whose
/// SHA-256 matches one we issued *is* that certificate, byte for byte, so it is signed
/// by us: its signature need not be verified again on every request.
pub fn check_certificate(
    record: Option<KnownCertificate>,
    ca: &str,
    kind: ProfileKind,
    now: i64,
) -> Result<KnownCertificate, Refusal> {
    let record = record.filter(|r| r.ca == ca).ok_or_else(|| Refusal::ForeignCertificate(ca.to_string()))?;
    if now < record.not_before || now > record.not_after {
        return Err(Refusal::CertificateOutOfValidity);
    }
    // Defence in depth: the same CA also issues e.g. OCSP-signer and server
    // certificates, which are never client identities.
    if record.kind != Some(kind) {
        return Err(Refusal::NotAnIdentity(ca.to_string()));
    }
    match record.state {
        CertState::Valid => Ok(record),
        CertState::Revoked => Err(Refusal::CertificateRevoked),
        CertState::Superseded => Err(Refusal::CertificateSuperseded),
    }
}

/// The first 16 hex digits of a fingerprint, for actor names.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// Fixed one-minute windows of enrollments per station (per process).
#[derive(Debug, Default)]
pub struct StationWindows {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl StationWindows {
    /// Counts one enrollment of `station` at `now`, or refuses it when `limit` (per
    /// minute; 0 = none) is reached.
    pub fn admit(&self, station: &str, limit: u32, now: i64) -> Result<(), Refusal> {
        if limit == 0 {
            return Ok(());
        }
        let minute = now.div_euclid(60);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let entry = windows.entry(station.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            return Err(Refusal::StationRateLimited { limit, retry_after: (60 - now.rem_euclid(60)) as u64 });
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(state: CertState) -> KnownCertificate {
        KnownCertificate {
            issuer: "station".into(),
            ca: "station".into(),
            serial: vec![1],
            profile: "station".into(),
            kind: Some(ProfileKind::Station),
            device_id: None,
            not_before: 100,
            not_after: 200,
            state,
            fingerprint: "ab".repeat(32),
            public_key_sha256: "cd".repeat(32),
            der: vec![],
        }
    }

    #[test]
    fn only_our_current_identity_of_the_right_kind_passes() {
        let ok = |c, ca, kind, now| check_certificate(Some(c), ca, kind, now);
        assert!(ok(cert(CertState::Valid), "station", ProfileKind::Station, 150).is_ok());
        assert_eq!(
            check_certificate(None, "station", ProfileKind::Station, 150),
            Err(Refusal::ForeignCertificate("station".into()))
        );
        assert_eq!(
            ok(cert(CertState::Valid), "device", ProfileKind::Station, 150),
            Err(Refusal::ForeignCertificate("device".into()))
        );
        assert_eq!(
            ok(cert(CertState::Valid), "station", ProfileKind::Station, 201),
            Err(Refusal::CertificateOutOfValidity)
        );
        assert_eq!(
            ok(cert(CertState::Valid), "station", ProfileKind::Station, 99),
            Err(Refusal::CertificateOutOfValidity)
        );
        assert_eq!(
            ok(cert(CertState::Valid), "station", ProfileKind::Operator, 150),
            Err(Refusal::NotAnIdentity("station".into()))
        );
        assert_eq!(
            ok(cert(CertState::Revoked), "station", ProfileKind::Station, 150),
            Err(Refusal::CertificateRevoked)
        );
        assert_eq!(
            ok(cert(CertState::Superseded), "station", ProfileKind::Station, 150),
            Err(Refusal::CertificateSuperseded)
        );
        // After a rollover the CA's later key issued it: still that CA's identity.
        let rolled = KnownCertificate { issuer: "station.2".into(), ..cert(CertState::Valid) };
        assert!(ok(rolled, "station", ProfileKind::Station, 150).is_ok());
    }

    #[test]
    fn station_windows_count_per_minute() {
        let w = StationWindows::default();
        assert!(w.admit("a", 2, 120).is_ok());
        assert!(w.admit("a", 2, 130).is_ok());
        assert_eq!(w.admit("a", 2, 135), Err(Refusal::StationRateLimited { limit: 2, retry_after: 45 }));
        assert!(w.admit("b", 2, 135).is_ok(), "windows are per station");
        assert!(w.admit("a", 2, 180).is_ok(), "a new minute starts a new window");
        assert!((0..100).all(|_| w.admit("c", 0, 1).is_ok()), "0 means unlimited");
    }
}
