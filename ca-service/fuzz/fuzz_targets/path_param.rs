//! The path-parameter check every admin endpoint and EST's `{label}` go through, and
//! the escaped form refusals are audited and logged with. An accepted identifier is 1
//! to 256 bytes without a control character; the escaped form never holds one, is
//! bounded, and leaves an identifier as it is.
#![no_main]

use ca_service::admin::fuzzing::{check_identifier, escaped};
use ca_service::admin::MAX_IDENTIFIER_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let shown = escaped(&value);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.len() <= MAX_IDENTIFIER_BYTES + 16, "{} bytes", shown.len());
    match check_identifier(&value) {
        Ok(()) => {
            assert!(!value.is_empty() && value.len() <= MAX_IDENTIFIER_BYTES);
            assert!(!value.chars().any(char::is_control));
            assert_eq!(shown, value);
        }
        Err(why) => assert!(!why.chars().any(char::is_control), "{why:?}"),
    }
});
