//! The admin API's JSON bodies and query strings, decoded as the handlers decode
//! them: the first byte picks the decoder (and the report), the rest is the body or
//! query string.
//! Never a panic; every refusal is a 400 whose reason is safe to log (no control
//! characters, bounded length); what is accepted is what the request said.
#![no_main]

use ca_service::admin::fuzzing::{self, Refused};
use libfuzzer_sys::fuzz_target;

/// Longest refusal reason any decoder may give, whatever the input.
const MAX_REASON: usize = 1024;

fn check_refusal(r: &Refused) {
    assert_eq!(r.0, 400, "{r:?}");
    assert!(!r.1.chars().any(char::is_control), "control character in {r:?}");
    assert!(r.1.len() <= MAX_REASON, "reason of {} bytes", r.1.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else { return };
    let text = std::str::from_utf8(input).ok();
    match which % 6 {
        0 => match fuzzing::revoke_reason(input) {
            Ok(reason) => {
                // The name that was accepted is the reason's name, in any case.
                let v: serde_json::Value = serde_json::from_slice(input).unwrap();
                let name = v["reason"].as_str().unwrap();
                assert!(ca_service::revoke::reason_name(reason).eq_ignore_ascii_case(name));
            }
            Err(r) => check_refusal(&r),
        },
        1 => match fuzzing::update_request(input) {
            Ok(new) => {
                let v: serde_json::Value = serde_json::from_slice(input).unwrap();
                assert_eq!(v["csr"].as_str().unwrap().as_bytes(), new.csr.as_slice());
                assert_eq!(v["classes"].as_array().unwrap().len(), new.classes.len());
                assert_eq!(v.get("validity_days").and_then(|d| d.as_u64()), new.validity_days.map(u64::from));
            }
            Err(r) => check_refusal(&r),
        },
        2 => match fuzzing::reject_reason(input) {
            Ok(reason) => {
                let v: serde_json::Value = serde_json::from_slice(input).unwrap();
                assert_eq!(v["reason"].as_str(), Some(reason.as_str()));
            }
            Err(r) => check_refusal(&r),
        },
        3 => {
            let Some(q) = text else { return };
            match fuzzing::audit_page(q) {
                Ok((after, limit)) => assert!(after >= 0 && (1..=1000).contains(&limit)),
                Err(r) => check_refusal(&r),
            }
        }
        4 => {
            let Some(q) = text else { return };
            if let Err(r) = fuzzing::status_filter(q) {
                check_refusal(&r);
            }
        }
        _ => {
            // The report's query string (the report named by the second byte).
            let Some(q) = text else { return };
            let report = ["counts", "expiring", "stale", "never-enrolled"][usize::from(which / 6) % 4];
            match fuzzing::report_query(report, q) {
                Ok(query) => assert!((1..=ca_service::reports::MAX_LIMIT).contains(&query.limit)),
                Err(r) => check_refusal(&r),
            }
        }
    }
});
