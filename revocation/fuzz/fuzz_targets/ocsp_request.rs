//! `parse_request` must never panic, and whatever it accepts must be consistent:
//! at least one CertID, a bounded nonce, input within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revocation::ocsp::{error_response, parse_request, MAX_REQUEST_LEN};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(req) => {
            assert!(data.len() <= MAX_REQUEST_LEN);
            assert!(!req.cert_ids.is_empty());
            if let Some(n) = &req.nonce {
                assert!(n.len() >= 3 && n.len() <= 34);
            }
            for id in &req.cert_ids {
                let _ = (id.hash_algorithm(), id.issuer_name_hash(), id.issuer_key_hash(), id.serial());
            }
        }
        Err(e) => {
            let _ = error_response(e.status());
        }
    }
});
