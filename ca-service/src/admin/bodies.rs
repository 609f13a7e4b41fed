//! The admin API's request bodies and query strings, decoded without I/O.
//!
//! Each function takes the bytes the client sent and returns the typed request, or a
//! 400 whose reason is safe to audit and to log: whatever of the input a reason
//! repeats (an unknown field, an unknown reason name, serde's own message) has its
//! control characters escaped and is cut to a bounded length ([`params::escaped`]).
//! The handlers read the bytes (size-limited, `super::read_body`) and call these; the
//! fuzz targets (`ca-service/fuzz`) call them through [`super::fuzzing`].

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::params::escaped;
use super::MAX_AUDIT_PAGE;
use crate::est::Refusal;
use crate::revoke;
use crate::store::RequestStatus;
use crate::updates::NewUpdateRequest;
use revocation::Reason;

/// Default page size of `GET /api/v1/audit`.
pub(super) const DEFAULT_AUDIT_PAGE: i64 = 100;

/// A JSON object as `T`, or a 400 with serde's message, escaped. Only an object: serde
/// would also read a struct from an array of its fields (`["keyCompromise"]`), which
/// no documented body is.
fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Refusal::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Refusal::bad_request(format!("malformed JSON body: {}", escaped(&e.to_string()))))
}

/// A query string as `T`, or a 400 with the decoder's message, escaped.
pub(crate) fn query<T: DeserializeOwned>(query: &str) -> Result<T, Refusal> {
    actix_web::web::Query::<T>::from_query(query)
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| Refusal::bad_request(format!("bad query: {}", escaped(&e.to_string()))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
}

/// `{"reason": "keyCompromise"}` of the revoke endpoints: an RFC 5280 reason name.
pub(super) fn revoke_reason(body: &[u8]) -> Result<Reason, Refusal> {
    let body: RevokeBody = json(body)?;
    revoke::parse_reason(&body.reason).map_err(Refusal::bad_request)
}

/// The body of `POST /rotations` (`crate::rotation::Request`), checked at `now`.
pub(super) fn rotation(body: &[u8], now: i64) -> Result<crate::rotation::Order, Refusal> {
    let request: crate::rotation::Request = json(body)?;
    request.check(now).map_err(Refusal::bad_request)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequestBody {
    /// PKCS#10 in PEM.
    csr: String,
    classes: Vec<String>,
    validity_days: Option<u32>,
}

/// `{"csr": PEM, "classes": [...], "validity_days": n}` of `POST /update-requests`.
/// The CSR, classes and validity are checked by the workflow (`crate::updates`).
pub(super) fn update_request(body: &[u8]) -> Result<NewUpdateRequest, Refusal> {
    let body: UpdateRequestBody = json(body)?;
    Ok(NewUpdateRequest { csr: body.csr.into_bytes(), classes: body.classes, validity_days: body.validity_days })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

/// `{"reason": "..."}` of `POST /update-requests/{id}/reject`; its length is the
/// workflow's rule (`crate::updates::reject`).
pub(super) fn reject_reason(body: &[u8]) -> Result<String, Refusal> {
    json::<RejectBody>(body).map(|b| b.reason)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// `after=N&limit=M` of `GET /audit`: entries after sequence number `after` (≥ 0), at
/// most `limit` (1..=[`MAX_AUDIT_PAGE`], default [`DEFAULT_AUDIT_PAGE`]).
pub(super) fn audit_page(query_string: &str) -> Result<(i64, i64), Refusal> {
    let q: AuditQuery = query(query_string)?;
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) || q.after < 0 {
        return Err(Refusal::bad_request(format!("limit must be 1..={MAX_AUDIT_PAGE} and after ≥ 0")));
    }
    Ok((q.after, limit))
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

/// `status=pending` of `GET /update-requests`: no filter, or one status.
pub(crate) fn status_filter(query_string: &str) -> Result<Option<RequestStatus>, Refusal> {
    let q: StatusQuery = query(query_string)?;
    q.status
        .map(|s| {
            RequestStatus::parse(&s).map_err(|_| {
                Refusal::bad_request(format!("unknown status '{}' (pending, approved, rejected, issued)", escaped(&s)))
            })
        })
        .transpose()
}

/// The query string of `GET /api/v1/reports/{report}` (see [`crate::reports`]).
pub(crate) fn report_query(
    report: crate::reports::Report,
    query_string: &str,
) -> Result<crate::reports::ReportQuery, Refusal> {
    let params: crate::reports::ReportParams = query(query_string)?;
    params.check(report).map_err(Refusal::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_and_refusals_are_safe_to_log() {
        assert_eq!(revoke_reason(br#"{"reason":"keyCompromise"}"#).unwrap(), Reason::KeyCompromise);
        let r = revoke_reason(b"{\"reason\":\"x\\n\\u0000y\"}").unwrap_err();
        assert!(r.reason.contains(r"'x\n\0y'") && !r.reason.chars().any(char::is_control), "{}", r.reason);
        let r = revoke_reason(b"{\"reason\":\"k\",\"a\\nb\":1}").unwrap_err();
        assert!(r.reason.contains("unknown field") && !r.reason.chars().any(char::is_control), "{}", r.reason);
        let long = format!(r#"{{"reason":"{}"}}"#, "k".repeat(10_000));
        assert!(revoke_reason(long.as_bytes()).unwrap_err().reason.len() < 1024);

        let new = update_request(br#"{"csr":"PEM","classes":["a"],"validity_days":3}"#).unwrap();
        assert_eq!(
            (new.csr.as_slice(), new.classes.as_slice(), new.validity_days),
            (&b"PEM"[..], &["a".to_string()][..], Some(3))
        );
        assert!(update_request(br#"{"csr":"PEM","classes":[],"validity_days":-1}"#).is_err());
        assert_eq!(reject_reason(br#"{"reason":"no"}"#).unwrap(), "no");
        // Found by the admin_body fuzz target: serde reads a struct from an array too.
        for array in [&b"[\"f\"]\t"[..], br#" ["keyCompromise"]"#] {
            assert_eq!(reject_reason(array).unwrap_err().reason, "the body must be a JSON object");
            assert_eq!(revoke_reason(array).unwrap_err().reason, "the body must be a JSON object");
        }

        assert_eq!(audit_page("").unwrap(), (0, DEFAULT_AUDIT_PAGE));
        assert_eq!(audit_page("after=5&limit=1000").unwrap(), (5, 1000));
        for bad in ["limit=0", "limit=1001", "after=-1", "after=x", "limit=%00"] {
            let r = audit_page(bad).unwrap_err();
            assert!(!r.reason.chars().any(char::is_control), "{bad}: {}", r.reason);
        }
        assert_eq!(status_filter("status=issued").unwrap(), Some(RequestStatus::Issued));
        assert_eq!(status_filter("").unwrap(), None);
        let r = status_filter("status=a%0Ab").unwrap_err();
        assert!(r.reason.contains(r"a\nb"), "{}", r.reason);
    }

    #[test]
    fn rotation_bodies_that_are_not_an_order_get_a_reason() {
        const NOW: i64 = 1_800_000_000;
        let order =
            rotation(br#"{"batch":"b1","by":"7d","after_deadline":"revoke","key_exposure":true}"#, NOW).unwrap();
        assert_eq!((order.deadline, order.key_exposure), (NOW + 7 * 86_400, true));
        for (body, reason) in [
            (&b"garbage"[..], "must be a JSON object"),
            (br#"["batch"]"#, "must be a JSON object"),
            (br#"{"batch":"b1"}"#, "missing field"),
            (br#"{"batch":"b1","by":"7d","colour":"red"}"#, "unknown field"),
            (br#"{"batch":"b1","by":7}"#, "malformed JSON"),
            (br#"{"by":"7d"}"#, "exactly one of device, batch or model"),
            (br#"{"batch":"b1","by":"yesterday"}"#, "neither RFC 3339"),
            (b"{\"batch\":\"b\\u0000\",\"by\":\"7d\"}", "control character"),
        ] {
            let r = rotation(body, NOW).unwrap_err();
            assert_eq!(r.status.as_u16(), 400, "{}", String::from_utf8_lossy(body));
            assert!(r.reason.contains(reason), "{}: {}", String::from_utf8_lossy(body), r.reason);
            assert!(!r.reason.chars().any(char::is_control), "{}", r.reason);
        }
    }
}
