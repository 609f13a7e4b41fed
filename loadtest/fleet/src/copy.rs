//! `COPY … FROM STDIN (FORMAT binary)`: rows are encoded where they are generated
//! (on the blocking pool, a chunk at a time, in PostgreSQL's binary COPY format) and
//! each table's stream, on its own connection, only forwards the encoded chunks in
//! order — large writes, no per-row work on the runtime.

use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use ca_service::audit::{entries_after, AuditEvent};
use futures_util::SinkExt;
use tokio::sync::mpsc::Receiver;
use tokio_postgres::{Client, CopyInSink};

use crate::rows::{CertRow, DeviceRow};

/// Rows written and how long the stream was open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub elapsed: Duration,
}

impl Written {
    pub fn per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub const DEVICES_SQL: &str = "COPY devices (device_id, model, class, batch, hardware_serial, state, reprovision, \
                               created_at, updated_at) FROM STDIN (FORMAT binary)";
pub const CERTS_SQL: &str = "COPY certificates (issuer, serial_hex, subject, device_id, profile, not_before, \
                             not_after, status, revoked_at, revocation_reason, fingerprint, public_key_sha256, der, \
                             created_at, crl_shard, request_sha256, requested_by) FROM STDIN (FORMAT binary)";
pub const AUDIT_SQL: &str =
    "COPY audit_log (seq, time_us, actor, action, target, outcome, details, leaf_hash) FROM STDIN (FORMAT binary)";

/// Signature, flags and header-extension length of the binary COPY format.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
const TRAILER: &[u8] = &[0xff, 0xff];

/// Tuples in the binary COPY format.
#[derive(Debug, Default)]
pub struct Tuples(Vec<u8>);

impl Tuples {
    fn row(&mut self, fields: i16) -> &mut Self {
        self.0.extend_from_slice(&fields.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    fn text(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn null(&mut self) -> &mut Self {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }
    fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }
    fn int8(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    fn opt_int8(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }
    fn int4(&mut self, v: i32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    fn opt_int4(&mut self, v: Option<i32>) -> &mut Self {
        match v {
            Some(v) => self.int4(v),
            None => self.null(),
        }
    }
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

pub fn devices(rows: &[DeviceRow]) -> Tuples {
    let mut t = Tuples(Vec::with_capacity(rows.len() * 160));
    for d in rows {
        t.row(9).text(&d.device_id).text(&d.model).text("default").text(&d.batch).text(&d.hardware_serial);
        t.text(d.state).bytes(&[0]).int8(d.created_at).int8(d.updated_at);
    }
    t
}

pub fn certificates(rows: &[CertRow], issuer: &str, profile: &str) -> Result<Tuples> {
    let mut t = Tuples(Vec::with_capacity(rows.len() * (rows.first().map_or(0, |c| c.cert.der.len()) + 600)));
    for c in rows {
        let shard = i32::try_from(c.cert.crl_shard)?;
        t.row(17).text(issuer).text(&c.serial_hex).text(&c.cert.subject).text(&c.device_id).text(profile);
        t.int8(c.cert.not_before).int8(c.cert.not_after).text(c.status).opt_int8(c.revoked_at).opt_int4(c.reason);
        t.text(&c.cert.fingerprint).text(&c.public_key_sha256).bytes(&c.cert.der).int8(c.created_at).int4(shard);
        t.opt_text(c.request_sha256.as_deref()).opt_text(c.requested_by.as_deref());
    }
    Ok(t)
}

/// The entries of `events` numbered from `first_seq`, those up to `last_seq` only.
/// Each leaf hash is the service's (`ca_service::audit::entries_after`), so the
/// checkpoint job finds every entry consistent.
pub fn audit(events: Vec<(i64, AuditEvent)>, first_seq: i64, last_seq: i64) -> (Tuples, u64) {
    let mut t = Tuples(Vec::with_capacity(events.len() * 420));
    let mut n = 0;
    for (seq, (time_us, event)) in (first_seq..=last_seq).zip(events) {
        for e in entries_after(seq - 1, time_us, [event]) {
            let ev = &e.event;
            t.row(8).int8(e.seq).int8(e.time_us).text(&ev.actor).text(&ev.action).text(&ev.target);
            t.text(&ev.outcome).text(&ev.details);
            match &e.leaf_hash {
                Some(h) => t.bytes(h.as_slice()),
                None => t.null(),
            };
            n += 1;
        }
    }
    (t, n)
}

/// Privileged reads of `targets` by an auditor, `count` of them from `first_seq`: the
/// rest of a log asked to be longer than the fleet's own events.
pub fn reads(targets: &[String], first_seq: i64, count: u64, time_us: i64) -> (Tuples, u64) {
    let events = targets
        .iter()
        .cycle()
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .enumerate()
        .map(|(n, target)| {
            (time_us + n as i64, AuditEvent::success("token:auditor", "api.certificate.read", target.clone()))
        })
        .collect();
    audit(events, first_seq, first_seq + i64::try_from(count).unwrap_or(i64::MAX) - 1)
}

/// One table's COPY: the header, the encoded chunks in the order they come, the
/// trailer. The rows PostgreSQL counted, and how long the stream was open.
pub async fn stream(client: &Client, sql: &str, mut rx: Receiver<Bytes>) -> Result<Written> {
    let sink: CopyInSink<Bytes> = client.copy_in(sql).await.with_context(|| sql.to_string())?;
    let mut sink = pin!(sink);
    let started = Instant::now();
    send(sink.as_mut(), Bytes::from_static(HEADER)).await?;
    while let Some(chunk) = rx.recv().await {
        send(sink.as_mut(), chunk).await?;
    }
    send(sink.as_mut(), Bytes::from_static(TRAILER)).await?;
    let rows = sink.finish().await.with_context(|| sql.to_string())?;
    Ok(Written { rows, elapsed: started.elapsed() })
}

async fn send(mut sink: Pin<&mut CopyInSink<Bytes>>, chunk: Bytes) -> Result<()> {
    sink.send(chunk).await.context("COPY data")
}
