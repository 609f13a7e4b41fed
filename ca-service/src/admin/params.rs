//! Path parameters, checked before anything reaches a store: the one parser every
//! admin endpoint reads its `{issuer}`, `{serial}`, `{device_id}`, `{batch}`,
//! `{model}` and `{id}` with (and EST its `{label}`, with [`check_identifier`]).
//!
//! An identifier is 1 to [`MAX_IDENTIFIER_BYTES`] bytes without control characters:
//! a NUL is an error in PostgreSQL text and nothing in SQLite, and a line break in an
//! audit target or a log line forges a record. A bad one is refused with 400 and a
//! reason, and the refusal is audited against the parameter's escaped form
//! ([`PathId::shown`]), which is safe to store and to log.

use actix_web::HttpRequest;

use crate::est::Refusal;

/// Longest identifier a path parameter may carry, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// `Err` with the reason if `value` is not an identifier (see the module docs); `what`
/// names it in the reason.
pub(crate) fn check_identifier(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!("the {what} is longer than {MAX_IDENTIFIER_BYTES} bytes"));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(format!("the {what} contains a control character (U+{:04X} at byte {at})", u32::from(c)));
    }
    Ok(())
}

/// `value` with control characters escaped (`\n`, `\u{0}`, …) and cut to a bounded
/// length: what may be stored in an audit target or logged.
pub(crate) fn escaped(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if out.len() >= MAX_IDENTIFIER_BYTES {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One path parameter: its checked value, or why it is refused.
#[derive(Debug)]
pub(super) struct PathId {
    value: Result<String, String>,
    shown: String,
}

impl PathId {
    /// The parameter `name` of the matched route; `what` names it in a refusal.
    pub(super) fn from_path(req: &HttpRequest, name: &str, what: &str) -> Self {
        let raw = req.match_info().get(name).unwrap_or_default();
        let value = check_identifier(what, raw).map(|()| raw.to_string());
        Self { value, shown: escaped(raw) }
    }

    /// The form for audit targets and messages: the value, control characters escaped.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// The value, or a 400 naming what is wrong with it.
    pub(super) fn get(&self) -> Result<&str, Refusal> {
        self.value.as_deref().map_err(|why| Refusal::bad_request(why.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_without_control_characters() {
        assert_eq!(check_identifier("device id", "SN-0001"), Ok(()));
        assert_eq!(check_identifier("batch", "línea 7 / 2024"), Ok(()));
        for bad in ["", "a\0b", "\0", "x\ny", "tab\there", "del\u{7f}", "c1\u{85}"] {
            let why = check_identifier("device id", bad).unwrap_err();
            assert!(why.starts_with("the device id "), "{bad:?}: {why}");
            assert!(!why.chars().any(char::is_control), "{why:?}");
        }
        assert!(check_identifier("id", &"x".repeat(MAX_IDENTIFIER_BYTES)).is_ok());
        assert!(check_identifier("id", &"x".repeat(MAX_IDENTIFIER_BYTES + 1)).is_err());
        assert_eq!(escaped("a\0b\nc"), "a\\u{0}b\\nc");
        assert!(escaped(&"\n".repeat(1000)).len() < MAX_IDENTIFIER_BYTES + 8);
    }

    #[test]
    fn path_ids_refuse_with_a_reason_and_show_escaped() {
        let req = actix_web::test::TestRequest::default().param("device_id", "D\0\n1").to_http_request();
        let id = PathId::from_path(&req, "device_id", "device id");
        assert_eq!(id.shown(), "D\\u{0}\\n1");
        let refusal = id.get().unwrap_err();
        assert_eq!(refusal.status, actix_web::http::StatusCode::BAD_REQUEST);
        assert!(refusal.reason.contains("control character (U+0000 at byte 1)"), "{}", refusal.reason);
        let req = actix_web::test::TestRequest::default().param("device_id", "SN-1").to_http_request();
        assert_eq!(PathId::from_path(&req, "device_id", "device id").get().unwrap(), "SN-1");
    }
}
