//! Lifecycle reports: what will expire, which identities are stale, which devices never
//! enrolled, and counts by state — for the admin API (`GET /api/v1/reports/{report}`,
//! role auditor and up) and the CLI (`ca-service report …`), in JSON or CSV.
//!
//! One path for both: the caller's parameters ([`ReportParams`], from a query string or
//! from the command line) are checked here into a [`ReportQuery`], [`run`] answers it
//! from the store's indexes (`store::ReportStore`: index ranges, never a scan of
//! certificate bodies) and returns a [`Table`], which renders as JSON or CSV. Lists are
//! paged with an opaque cursor (`next`): the order is (notAfter, issuer, serial) for
//! certificates and the id for devices, so a page never skips or repeats a row when
//! certificates are issued meanwhile.
//!
//! A *stale identity* is an `active` device whose newest certificate is past its
//! renewal point and was not replaced. The renewal point is the centre of its profile's
//! renewal window (`[profiles.NAME.renewal] window_centre`, by default two thirds of
//! the way from notBefore to notAfter, where ACME ARI's practice centres it); a lapsed
//! certificate of an active device is stale too (`expired` = true).

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::issuance::unix;
use crate::store::{CertCursor, GroupBy, LifecycleRow, ReportFilter, ReportStore, StoreError};

/// Rows per page unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Groups an expiry report returns at most.
pub const MAX_GROUPS: i64 = 10_000;
/// The longest window an expiry report looks ahead.
pub const MAX_WINDOW_SECS: u64 = 10 * 366 * 86_400;

/// The reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// Certificates by issuer, profile and state; devices by state.
    Counts,
    /// `valid` certificates whose notAfter is within the window from now.
    Expiring,
    /// Active devices overdue for renewal (see the module docs).
    Stale,
    /// Devices registered and never enrolled.
    NeverEnrolled,
}

impl Report {
    pub const ALL: [Report; 4] = [Report::Counts, Report::Expiring, Report::Stale, Report::NeverEnrolled];

    pub fn as_str(self) -> &'static str {
        match self {
            Report::Counts => "counts",
            Report::Expiring => "expiring",
            Report::Stale => "stale",
            Report::NeverEnrolled => "never-enrolled",
        }
    }

    pub fn parse(s: &str) -> Result<Report, String> {
        Report::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!(
                "unknown report '{}' (counts, expiring, stale, never-enrolled)",
                s.escape_debug().take(64).collect::<String>()
            )
        })
    }
}

/// JSON (an object with `rows` and `next`) or CSV (a header line, then the rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// The parameters as a caller gives them; every one optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `expiring`: how far ahead, `30d`, `12h`, `90m` or seconds (default 30d).
    pub within: Option<String>,
    /// `expiring`: count by `batch`, `model`, `profile` or `issuer` instead of listing.
    pub group_by: Option<String>,
    pub profile: Option<String>,
    pub issuer: Option<String>,
    pub batch: Option<String>,
    pub model: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A checked request for a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportQuery {
    pub report: Report,
    pub window_secs: u64,
    pub group_by: Option<GroupBy>,
    pub filter: ReportFilter,
    pub after: Option<String>,
    pub limit: i64,
    pub format: Format,
}

impl ReportParams {
    /// Checks the parameters for `report`: a message naming what is wrong (safe to show
    /// and to audit: the caller's text in it is escaped and cut short).
    pub fn check(self, report: Report) -> Result<ReportQuery, String> {
        let shown = |v: &str| v.escape_debug().take(64).collect::<String>();
        let only_for = |name: &str, set: bool, allowed: &[Report]| {
            if set && !allowed.contains(&report) {
                Err(format!("'{name}' does not apply to the {} report", report.as_str()))
            } else {
                Ok(())
            }
        };
        only_for("within", self.within.is_some(), &[Report::Expiring])?;
        only_for("group_by", self.group_by.is_some(), &[Report::Expiring])?;
        let listing = [Report::Expiring, Report::Stale, Report::NeverEnrolled];
        only_for("after", self.after.is_some(), &listing)?;
        only_for("limit", self.limit.is_some(), &listing)?;
        let filters = [Report::Expiring, Report::Stale];
        only_for("profile", self.profile.is_some(), &filters)?;
        only_for("issuer", self.issuer.is_some(), &filters)?;
        only_for("batch", self.batch.is_some(), &listing)?;
        only_for("model", self.model.is_some(), &listing)?;
        let window_secs = match &self.within {
            None => 30 * 86_400,
            Some(w) => parse_window(w).ok_or_else(|| {
                format!(
                    "within must be a duration such as 30d, 12h, 90m or seconds, at most 10 years, not '{}'",
                    shown(w)
                )
            })?,
        };
        let group_by = self
            .group_by
            .as_deref()
            .map(|g| {
                GroupBy::parse(g)
                    .ok_or_else(|| format!("group_by must be batch, model, profile or issuer, not '{}'", shown(g)))
            })
            .transpose()?;
        if group_by.is_some() && (self.after.is_some() || self.limit.is_some()) {
            return Err("a grouped report is one page: 'after' and 'limit' do not apply".into());
        }
        for (what, value) in
            [("profile", &self.profile), ("issuer", &self.issuer), ("batch", &self.batch), ("model", &self.model)]
        {
            if let Some(v) = value {
                crate::admin::check_identifier(what, v)?;
            }
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("limit must be 1..={MAX_LIMIT}"));
        }
        let format = match self.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => return Err(format!("format must be json or csv, not '{}'", shown(other))),
        };
        if let Some(after) = &self.after {
            // Checked now, so that a bad cursor is a 400 before any store is asked.
            match report {
                Report::NeverEnrolled => decode_device_cursor(after).map(|_| ())?,
                _ => decode_cert_cursor(after).map(|_| ())?,
            }
        }
        let filter = ReportFilter { profile: self.profile, issuer: self.issuer, batch: self.batch, model: self.model };
        Ok(ReportQuery { report, window_secs, group_by, filter, after: self.after, limit, format })
    }
}

/// `30d`, `12h`, `90m`, `45s` or a number of seconds; 1 s ..= [`MAX_WINDOW_SECS`].
pub fn parse_window(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 12 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = n.checked_mul(match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    })?;
    (1..=MAX_WINDOW_SECS).contains(&secs).then_some(secs)
}

const BAD_CURSOR: &str = "'after' is not a cursor this report returned";

fn encode_cert_cursor(c: &CertCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\n{}\n{}", c.not_after, c.issuer, c.serial_hex))
}

fn decode_cert_cursor(s: &str) -> Result<CertCursor, String> {
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| BAD_CURSOR.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| BAD_CURSOR.to_string())?;
    let mut parts = text.split('\n');
    let (Some(t), Some(issuer), Some(serial), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(BAD_CURSOR.into());
    };
    let not_after = t.parse().map_err(|_| BAD_CURSOR.to_string())?;
    let hex_ok = serial.len() <= 40 && serial.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok || crate::admin::check_identifier("cursor", issuer).is_err() {
        return Err(BAD_CURSOR.into());
    }
    Ok(CertCursor { not_after, issuer: issuer.to_string(), serial_hex: serial.to_string() })
}

fn encode_device_cursor(device_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(device_id)
}

fn decode_device_cursor(s: &str) -> Result<String, String> {
    let id = URL_SAFE_NO_PAD.decode(s).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(BAD_CURSOR)?;
    crate::admin::check_identifier("cursor", &id).map_err(|_| BAD_CURSOR.to_string())?;
    Ok(id)
}

/// A report's answer: named columns, rows of JSON values, and where the next page
/// starts (when this one is full).
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub report: Report,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
    pub next: Option<String>,
}

impl Table {
    /// `{"report": …, "rows": [{column: value, …}], "next": cursor | null}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| Value::Object(self.columns.iter().map(|c| c.to_string()).zip(r.iter().cloned()).collect()))
            .collect();
        json!({ "report": self.report.as_str(), "rows": rows, "next": self.next })
    }

    /// RFC 4180 CSV with a header line; nulls are empty fields.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.columns)?;
        for row in &self.rows {
            w.write_record(row.iter().map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }))?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}

fn rfc3339(unix_secs: i64) -> Value {
    crate::issuance::rfc3339(unix_secs).map_or(Value::Null, Value::String)
}

const CERT_COLUMNS: [&str; 9] =
    ["issuer", "serial", "subject", "profile", "device_id", "batch", "model", "not_before", "not_after"];

fn cert_row(r: &LifecycleRow) -> Vec<Value> {
    vec![
        json!(r.issuer),
        json!(r.serial_hex),
        json!(r.subject),
        json!(r.profile),
        json!(r.device_id),
        json!(r.batch),
        json!(r.model),
        rfc3339(r.not_before),
        rfc3339(r.not_after),
    ]
}

/// When a certificate is due for renewal: two thirds of the way through its life.
pub fn renewal_point(not_before: i64, not_after: i64, ppm: i64) -> i64 {
    not_before + (not_after - not_before) * ppm / 1_000_000
}

/// Each profile's renewal point: the centre of its renewal window, ppm of the lifetime.
fn renewal_points(config: &Config) -> Vec<(String, i64)> {
    config.profiles.iter().map(|(name, p)| (name.clone(), p.renewal.policy().unwrap_or_default().centre_ppm)).collect()
}

/// Answers a report at `now` (unix seconds).
pub async fn run(store: &dyn ReportStore, config: &Config, q: &ReportQuery, now: i64) -> Result<Table, StoreError> {
    let cert_after = || q.after.as_deref().map_or(Ok(CertCursor::start()), decode_cert_cursor);
    // Checked by `ReportParams::check` already; a cursor that fails here is a bug.
    let bad = |e: String| StoreError::Conflict(e);
    match q.report {
        Report::Counts => {
            let mut rows = Vec::new();
            for c in store.certificate_counts(now).await? {
                rows.push(vec![
                    json!("certificate"),
                    json!(c.issuer),
                    json!(c.profile),
                    json!(c.state.as_str()),
                    json!(c.count),
                ]);
            }
            for (state, count) in store.device_counts().await? {
                rows.push(vec![json!("device"), Value::Null, Value::Null, json!(state.as_str()), json!(count)]);
            }
            Ok(Table {
                report: q.report,
                columns: vec!["kind", "issuer", "profile", "state", "count"],
                rows,
                next: None,
            })
        }
        Report::Expiring => {
            let to = now.saturating_add(i64::try_from(q.window_secs).unwrap_or(i64::MAX));
            if let Some(group_by) = q.group_by {
                let groups = store.expiring_groups(now, to, &q.filter, group_by, MAX_GROUPS).await?;
                let rows =
                    groups.iter().map(|g| vec![json!(g.key), json!(g.count), rfc3339(g.first_not_after)]).collect();
                return Ok(Table {
                    report: q.report,
                    columns: vec![group_by.as_str(), "count", "first_not_after"],
                    rows,
                    next: None,
                });
            }
            let found = store.expiring_certificates(now, to, &q.filter, &cert_after().map_err(bad)?, q.limit).await?;
            let next = (found.len() as i64 == q.limit)
                .then(|| found.last().map(|r| encode_cert_cursor(&r.cursor())))
                .flatten();
            let mut columns = CERT_COLUMNS.to_vec();
            columns.push("days_left");
            let rows = found
                .iter()
                .map(|r| {
                    let mut row = cert_row(r);
                    row.push(json!((r.not_after - now) / 86_400));
                    row
                })
                .collect();
            Ok(Table { report: q.report, columns, rows, next })
        }
        Report::Stale => {
            // Past its renewal point means notAfter ≤ now + the rest of the lifetime after
            // it: the longest such rest a profile gives bounds the index range to read.
            let points = renewal_points(config);
            let rest = config
                .profiles
                .iter()
                .zip(&points)
                .map(|((_, p), (_, ppm))| i64::from(p.validity_days) * 86_400 * (1_000_000 - ppm) / 1_000_000)
                .max()
                .unwrap_or(0);
            let bound = now.saturating_add(rest + 1);
            let after = cert_after().map_err(bad)?;
            let found = store.stale_certificates(&points, now, bound, &q.filter, &after, q.limit).await?;
            let ppm_of = |profile: &str| {
                points.iter().find(|(p, _)| p == profile).map_or(crate::store::DEFAULT_RENEWAL_PPM, |(_, at)| *at)
            };
            let next = (found.len() as i64 == q.limit)
                .then(|| found.last().map(|r| encode_cert_cursor(&r.cursor())))
                .flatten();
            let mut columns = CERT_COLUMNS.to_vec();
            columns.extend(["renewal_due", "expired"]);
            let rows = found
                .iter()
                .map(|r| {
                    let mut row = cert_row(r);
                    row.push(rfc3339(renewal_point(r.not_before, r.not_after, ppm_of(&r.profile))));
                    row.push(json!(r.not_after < now));
                    row
                })
                .collect();
            Ok(Table { report: q.report, columns, rows, next })
        }
        Report::NeverEnrolled => {
            let after = q.after.as_deref().map_or(Ok(String::new()), decode_device_cursor).map_err(bad)?;
            let found = store.never_enrolled(&q.filter, &after, q.limit).await?;
            let next = (found.len() as i64 == q.limit)
                .then(|| found.last().map(|d| encode_device_cursor(&d.device_id)))
                .flatten();
            let rows = found
                .iter()
                .map(|d| {
                    vec![json!(d.device_id), json!(d.batch), json!(d.model), json!(d.class), json!(d.hardware_serial)]
                })
                .collect();
            Ok(Table {
                report: q.report,
                columns: vec!["device_id", "batch", "model", "class", "hardware_serial"],
                rows,
                next,
            })
        }
    }
}

/// [`run`] now.
pub async fn run_now(store: &dyn ReportStore, config: &Config, q: &ReportQuery) -> Result<Table, StoreError> {
    run(store, config, q, unix(SystemTime::now())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(parse_window("30d"), Some(30 * 86_400));
        assert_eq!(parse_window("12h"), Some(43_200));
        assert_eq!(parse_window("90m"), Some(5_400));
        assert_eq!(parse_window("3600"), Some(3_600));
        for bad in ["", "d", "0", "-1d", "1w", "1.5d", "99999999999999d", "4000d", "1d\n"] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = CertCursor { not_after: 1_800_000_000, issuer: "device".into(), serial_hex: "0badc0de".into() };
        assert_eq!(decode_cert_cursor(&encode_cert_cursor(&c)).unwrap(), c);
        assert_eq!(decode_device_cursor(&encode_device_cursor("SN-1")).unwrap(), "SN-1");
        for bad in
            ["", "!!", "AAAA", &URL_SAFE_NO_PAD.encode("1\ndevice\nxyz"), &URL_SAFE_NO_PAD.encode("1\nde\u{7}v\n00")]
        {
            assert!(decode_cert_cursor(bad).is_err(), "{bad:?}");
        }
        assert!(decode_device_cursor(&URL_SAFE_NO_PAD.encode("a\nb")).is_err());
    }

    fn params(f: impl FnOnce(&mut ReportParams)) -> ReportParams {
        let mut p = ReportParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn parameters_are_checked_per_report() {
        let q = params(|p| {
            p.within = Some("7d".into());
            p.group_by = Some("batch".into());
            p.format = Some("csv".into());
        })
        .check(Report::Expiring)
        .unwrap();
        assert_eq!(
            (q.window_secs, q.group_by, q.format, q.limit),
            (7 * 86_400, Some(GroupBy::Batch), Format::Csv, DEFAULT_LIMIT)
        );
        let refused = |p: ReportParams, r: Report| p.check(r).unwrap_err();
        assert!(refused(params(|p| p.within = Some("7d".into())), Report::Stale).contains("does not apply"));
        assert!(refused(params(|p| p.group_by = Some("colour".into())), Report::Expiring).contains("group_by"));
        assert!(refused(params(|p| p.limit = Some(0)), Report::Stale).contains("limit"));
        assert!(refused(params(|p| p.limit = Some(MAX_LIMIT + 1)), Report::Stale).contains("limit"));
        assert!(refused(params(|p| p.after = Some("garbage".into())), Report::Stale).contains("cursor"));
        assert!(refused(params(|p| p.batch = Some("b\u{1b}[31m".into())), Report::NeverEnrolled).contains("control"));
        assert!(refused(params(|p| p.format = Some("xml".into())), Report::Counts).contains("format"));
        assert!(
            refused(params(|p| p.profile = Some("device".into())), Report::NeverEnrolled).contains("does not apply")
        );
        let grouped_page = params(|p| {
            p.group_by = Some("model".into());
            p.limit = Some(10);
        });
        assert!(refused(grouped_page, Report::Expiring).contains("one page"));
        assert!(Report::parse("expiring\n").unwrap_err().contains("\\n"), "the caller's text is escaped");
    }

    #[test]
    fn tables_render_as_json_objects_and_csv() {
        let t = Table {
            report: Report::NeverEnrolled,
            columns: vec!["device_id", "batch", "hardware_serial"],
            rows: vec![vec![json!("SN-1"), json!("b,1"), Value::Null], vec![json!("SN-\"2"), json!("b2"), json!("H2")]],
            next: Some("U04tMg".into()),
        };
        assert_eq!(
            t.to_json(),
            json!({"report": "never-enrolled", "next": "U04tMg", "rows": [
                {"device_id": "SN-1", "batch": "b,1", "hardware_serial": null},
                {"device_id": "SN-\"2", "batch": "b2", "hardware_serial": "H2"}]})
        );
        let csv = String::from_utf8(t.to_csv().unwrap()).unwrap();
        assert_eq!(csv, "device_id,batch,hardware_serial\nSN-1,\"b,1\",\n\"SN-\"\"2\",b2,H2\n");
    }

    #[test]
    fn the_renewal_point_is_two_thirds_of_the_lifetime() {
        assert_eq!(renewal_point(0, 90, 666_667), 60);
        assert_eq!(renewal_point(1_000, 1_000 + 365 * 86_400, 500_000), 1_000 + 365 * 86_400 / 2);
    }
}
