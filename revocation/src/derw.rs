//! Minimal DER writing helpers for the hot paths (definite lengths only).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{GeneralizedTime, UtcTime};
use der::DateTime;
use x509_cert::time::Time;

pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_UTC_TIME: u8 = 0x17;
pub(crate) const TAG_GENERALIZED_TIME: u8 = 0x18;

/// 2050-01-01T00:00:00Z: RFC 5280 §4.1.2.5 / §5.1.2.4 — UTCTime before, GeneralizedTime from.
pub(crate) const UTC_TIME_END: Duration = Duration::from_secs(2_524_608_000);

/// Encoded length of a TLV header with a one-byte tag.
pub(crate) fn header_len(len: usize) -> usize {
    1 + match len {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 5,
    }
}

pub(crate) fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Whether `t` is encoded as UTCTime (1970 ≤ t < 2050; earlier times are refused).
pub(crate) fn is_utc(t: SystemTime) -> bool {
    t.duration_since(UNIX_EPOCH).map(|d| d < UTC_TIME_END).unwrap_or(true)
}

/// Encoded length (TLV) of a time value.
pub(crate) fn time_len(t: SystemTime) -> usize {
    if is_utc(t) {
        15
    } else {
        17
    }
}

/// The x509-cert `Time` RFC 5280 requires for `t` (whole seconds, fraction dropped):
/// UTCTime before 2050, GeneralizedTime from 2050 on.
pub(crate) fn x509_time(t: SystemTime) -> der::Result<Time> {
    let dt = DateTime::from_system_time(t)?;
    if is_utc(t) {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn push2(out: &mut Vec<u8>, v: u8) {
    out.push(b'0' + v / 10);
    out.push(b'0' + v % 10);
}

/// Writes `t` as RFC 5280 `Time` TLV, byte-identical to encoding [`x509_time`] (checked
/// by the crl tests) but without going through a `Writer`.
pub(crate) fn push_time(out: &mut Vec<u8>, t: SystemTime) -> der::Result<()> {
    let dt = DateTime::from_system_time(t)?;
    let year = dt.year();
    if is_utc(t) {
        out.extend_from_slice(&[TAG_UTC_TIME, 13]);
        push2(out, (year % 100) as u8);
    } else {
        out.extend_from_slice(&[TAG_GENERALIZED_TIME, 15]);
        push2(out, (year / 100) as u8);
        push2(out, (year % 100) as u8);
    }
    push2(out, dt.month());
    push2(out, dt.day());
    push2(out, dt.hour());
    push2(out, dt.minutes());
    push2(out, dt.seconds());
    out.push(b'Z');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn header_lengths() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xff_ffff, 0x100_0000] {
            let mut v = Vec::new();
            push_header(&mut v, 0x30, len);
            assert_eq!(v.len(), header_len(len), "len {len}");
            let h = der::Header::new(der::Tag::Sequence, len).unwrap().to_der().unwrap();
            assert_eq!(v, h, "len {len}");
        }
    }

    #[test]
    fn times_match_der_encoder() {
        let secs = [0u64, 1, 951_782_400, 1_700_000_000, 2_524_607_999, 2_524_608_000, 4_102_444_800, 253_402_300_000];
        for s in secs {
            let t = UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(999);
            let mut v = Vec::new();
            push_time(&mut v, t).unwrap();
            assert_eq!(v, x509_time(t).unwrap().to_der().unwrap(), "secs {s}");
            assert_eq!(v.len(), time_len(t));
        }
        assert!(push_time(&mut Vec::new(), UNIX_EPOCH - Duration::from_secs(1)).is_err());
    }
}
