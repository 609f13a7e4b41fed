//! EST request decoding — the Content-Type check and the base64 body (with or without
//! line breaks, RFC 8951) — must never panic; a decoded body round-trips through the
//! one-line encoding the service answers with.
#![no_main]

use enrollment::est::{base64_line, check_content_type, decode_base64_body, MAX_BODY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b) % 64).min(data.len());
    let (header, body) = data.split_at(split);
    let _ = check_content_type(std::str::from_utf8(header).ok(), "application/pkcs10");
    if let Ok(der) = decode_base64_body(body) {
        assert!(body.len() <= MAX_BODY_BYTES);
        assert_eq!(decode_base64_body(base64_line(&der).as_bytes()).ok(), Some(der));
    }
});
