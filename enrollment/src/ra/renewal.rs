//! When a certificate should be renewed: the recommended renewal window of
//! draft-ietf-lamps-est-renewal-info, computed the way ACME ARI servers do (RFC 9773;
//! Boulder centres the window at two thirds of the lifetime), and moved by a rotation.
//!
//! The window is decided here and nowhere else: the renewal-info endpoint reports it,
//! the renewal pipeline exempts renewals inside it from the rate limit and refuses
//! same-key renewal inside a key-exposure rotation, and the stale report counts
//! certificates past its centre.
//!
//! A window is a fixed function of the certificate (its validity and serial) and of the
//! rotations that cover its device, so a device asking twice hears the same answer, and
//! a fleet issued within one hour is spread over `jitter` of the lifetime instead of
//! renewing within one hour: each certificate's window is shifted by an offset drawn
//! from its serial number (serials are ≥ 64 bits from a CSPRNG, DESIGN §5).

use serde::{Deserialize, Serialize};

use crate::ra::KnownCertificate;

/// Parts per million of a lifetime: fractions without floating point, so every
/// instance and both store dialects compute the same second.
pub const MILLION: i64 = 1_000_000;

/// A profile's renewal schedule, in millionths of a certificate's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalPolicy {
    /// Where the window is centred (before jitter).
    pub centre_ppm: i64,
    /// The window's width.
    pub width_ppm: i64,
    /// The spread of the per-certificate offset of the centre (±half of it).
    pub jitter_ppm: i64,
    /// How long a device should wait before asking again (Retry-After), seconds.
    pub recheck_secs: u64,
}

impl Default for RenewalPolicy {
    /// Centred at 2/3 (ARI's practice), 10 % wide, spread over another 10 %, asked
    /// about once a day (a fleet of 10 million asks 116 times a second).
    fn default() -> Self {
        Self { centre_ppm: 666_667, width_ppm: 100_000, jitter_ppm: 100_000, recheck_secs: 86_400 }
    }
}

impl RenewalPolicy {
    /// `Err` with the reason if the window can fall outside the lifetime.
    pub fn check(&self) -> Result<(), String> {
        let reach = self.width_ppm / 2 + self.jitter_ppm / 2;
        if self.width_ppm <= 0 || self.jitter_ppm < 0 {
            return Err("the renewal window's width must be above 0 and its jitter not below 0".into());
        }
        if self.centre_ppm - reach < 0 || self.centre_ppm + reach > MILLION {
            return Err(format!(
                "the renewal window (centre {}, width {}, jitter {}, as fractions of the lifetime) does not fit \
                 within the lifetime: centre ± (width + jitter) / 2 must lie within 0 … 1",
                ppm(self.centre_ppm),
                ppm(self.width_ppm),
                ppm(self.jitter_ppm)
            ));
        }
        if self.recheck_secs == 0 {
            return Err("the renewal recheck interval must be at least 1 s".into());
        }
        Ok(())
    }

    /// The scheduled window of a certificate valid `not_before ..= not_after` with
    /// this serial: the centre, shifted by the serial's offset, ± width / 2.
    pub fn scheduled(&self, not_before: i64, not_after: i64, serial: &[u8]) -> (i64, i64) {
        let lifetime = i128::from((not_after - not_before).max(0));
        let at = |ppm: i128| not_before + (lifetime * ppm / i128::from(MILLION)) as i64;
        let offset = i128::from(jitter_ppm(serial, self.jitter_ppm));
        let centre = i128::from(self.centre_ppm) + offset;
        let half = i128::from(self.width_ppm) / 2;
        (at(centre - half), at(centre + half))
    }
}

fn ppm(v: i64) -> String {
    format!("{:.6}", v as f64 / MILLION as f64)
}

/// The serial's offset in −jitter/2 … +jitter/2 (ppm): its SHA-256's first eight
/// bytes, scaled. Hashed so that serials from another issuer's scheme spread too.
pub fn jitter_ppm(serial: &[u8], jitter_ppm: i64) -> i64 {
    if jitter_ppm <= 0 {
        return 0;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, serial);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let unit = i128::from(u64::from_be_bytes(first)); // 0 … 2^64 − 1
    let jitter = i128::from(jitter_ppm);
    (unit * (jitter + 1) / (1i128 << 64) - jitter / 2) as i64
}

/// An operator's rotation that covers a device (`ca-service rotate`): certificates
/// issued before it opened, or in the second it opened (times are whole seconds, and
/// none may slip through), are to be replaced by `deadline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub id: i64,
    /// Unix seconds.
    pub opened_at: i64,
    pub deadline: i64,
    /// A key-exposure rotation: the replacement must have a new key.
    pub new_key_required: bool,
}

/// Why a window is what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowCause {
    /// The profile's schedule.
    Schedule,
    /// A rotation moved it.
    Rotation(Rotation),
}

/// A recommended renewal window (unix seconds, `start < end`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub cause: WindowCause,
}

impl Window {
    /// Whether a renewal at `now` follows the recommendation (at or after the start;
    /// a device past the end is late, and renewing is what it should do).
    pub fn open_at(&self, now: i64) -> bool {
        now >= self.start
    }

    /// The rotation that moved it, if one did.
    pub fn rotation(&self) -> Option<&Rotation> {
        match &self.cause {
            WindowCause::Rotation(r) => Some(r),
            WindowCause::Schedule => None,
        }
    }
}

/// The window of `cert` under `policy` and the rotations covering its device. A
/// rotation applies to certificates issued before it opened or in that second
/// (`issued_at`, unix seconds); of several, the one with the earliest deadline moves the window, to
/// *opened … deadline* (never later than the scheduled one), and a replacement must
/// have a new key if any of them says so.
pub fn window(policy: &RenewalPolicy, cert: &KnownCertificate, issued_at: i64, rotations: &[Rotation]) -> Window {
    let (start, end) = policy.scheduled(cert.not_before, cert.not_after, &cert.serial);
    let applying: Vec<&Rotation> = rotations.iter().filter(|r| issued_at <= r.opened_at).collect();
    let Some(first) = applying.iter().min_by_key(|r| (r.deadline, r.id)) else {
        return Window { start, end, cause: WindowCause::Schedule };
    };
    let rotation = Rotation { new_key_required: applying.iter().any(|r| r.new_key_required), ..(*first).clone() };
    let start = start.min(rotation.opened_at);
    let end = end.min(rotation.deadline).max(start + 1);
    Window { start, end, cause: WindowCause::Rotation(rotation) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ra::CertState;

    fn cert(not_before: i64, not_after: i64, serial: &[u8]) -> KnownCertificate {
        KnownCertificate {
            issuer: "device-ca".into(),
            ca: "device-ca".into(),
            serial: serial.to_vec(),
            profile: "device".into(),
            kind: None,
            device_id: Some("SN-1".into()),
            not_before,
            not_after,
            state: CertState::Valid,
            fingerprint: String::new(),
            public_key_sha256: String::new(),
            der: Vec::new(),
        }
    }

    const YEAR: i64 = 365 * 86_400;

    #[test]
    fn the_default_window_is_centred_at_two_thirds_within_the_jitter() {
        let p = RenewalPolicy::default();
        p.check().unwrap();
        for i in 0u32..200 {
            let (start, end) = p.scheduled(0, YEAR, &i.to_be_bytes());
            assert_eq!(end - start, YEAR / 10, "10 % of the lifetime wide");
            let centre = (start + end) / 2;
            let off = centre - YEAR * 2 / 3;
            assert!(off.abs() <= YEAR / 20 + 1, "centre {centre} more than 5 % off 2/3");
        }
    }

    #[test]
    fn one_hours_fleet_is_spread_over_the_jitter() {
        let p = RenewalPolicy::default();
        let starts: Vec<i64> =
            (0u32..1000).map(|i| p.scheduled(i64::from(i % 3600), YEAR, &i.to_le_bytes()).0).collect();
        let (min, max) = (starts.iter().min().unwrap(), starts.iter().max().unwrap());
        assert!(max - min > YEAR / 10 * 9 / 10, "1,000 certificates of one hour start over {} s", max - min);
        // And the same certificate always gets the same window.
        assert_eq!(p.scheduled(7, YEAR, b"abc"), p.scheduled(7, YEAR, b"abc"));
    }

    #[test]
    fn no_jitter_means_exactly_the_centre() {
        let p = RenewalPolicy { jitter_ppm: 0, ..RenewalPolicy::default() };
        assert_eq!(p.scheduled(0, 90, b"x"), (55, 64));
        assert_eq!(jitter_ppm(b"anything", 0), 0);
        for s in 0u8..=255 {
            let j = jitter_ppm(&[s], 100_000);
            assert!((-50_000..=50_000).contains(&j), "{j}");
        }
    }

    #[test]
    fn windows_outside_the_lifetime_are_refused() {
        let bad = RenewalPolicy { centre_ppm: 950_000, ..RenewalPolicy::default() };
        assert!(bad.check().unwrap_err().contains("does not fit"));
        assert!(RenewalPolicy { width_ppm: 0, ..RenewalPolicy::default() }.check().is_err());
        assert!(RenewalPolicy { recheck_secs: 0, ..RenewalPolicy::default() }.check().is_err());
    }

    #[test]
    fn a_rotation_moves_the_window_of_older_certificates_only() {
        let p = RenewalPolicy::default();
        let c = cert(0, YEAR, b"serial");
        let scheduled = window(&p, &c, 300, &[]);
        assert_eq!(scheduled.cause, WindowCause::Schedule);
        let r = Rotation { id: 1, opened_at: 1_000, deadline: 1_000 + 7 * 86_400, new_key_required: false };
        let moved = window(&p, &c, 300, std::slice::from_ref(&r));
        assert_eq!((moved.start, moved.end), (1_000, 1_000 + 7 * 86_400));
        assert!(moved.open_at(1_000) && !moved.open_at(999));
        // One issued in the second it opened is not a replacement; one after it is.
        assert_eq!(window(&p, &c, 1_000, std::slice::from_ref(&r)), moved);
        assert_eq!(window(&p, &c, 1_001, std::slice::from_ref(&r)), scheduled);
    }

    #[test]
    fn of_several_rotations_the_earliest_deadline_wins_and_any_key_exposure_counts() {
        let p = RenewalPolicy::default();
        let c = cert(0, YEAR, b"serial");
        let slow = Rotation { id: 1, opened_at: 100, deadline: 90 * 86_400, new_key_required: true };
        let fast = Rotation { id: 2, opened_at: 200, deadline: 3 * 86_400, new_key_required: false };
        let w = window(&p, &c, 10, &[slow, fast]);
        let r = w.rotation().unwrap();
        assert_eq!((r.id, w.start, w.end, r.new_key_required), (2, 200, 3 * 86_400, true));
    }

    #[test]
    fn a_deadline_after_the_scheduled_end_keeps_the_scheduled_end() {
        let p = RenewalPolicy { jitter_ppm: 0, ..RenewalPolicy::default() };
        let c = cert(0, 90 * 86_400, b"s");
        let late = Rotation { id: 1, opened_at: 10, deadline: 89 * 86_400, new_key_required: false };
        let w = window(&p, &c, 0, &[late]);
        assert_eq!((w.start, w.end), (10, p.scheduled(0, 90 * 86_400, b"s").1));
    }
}
