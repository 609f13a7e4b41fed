//! The fleet's rows, device by device: registration in batches, one certificate per
//! enrolled device (a renewed device has its superseded one too), a fixed share
//! revoked, and the audit events those leave.
//!
//! Device `i` (0-based) of `n`:
//! * id `SN-<i+1>` (zero-padded to a fixed width), batch `batch-<i / batch_size + 1>`
//!   (`batch-0001` …), model by batch in turn from the configured models;
//! * every 50th device (`i % 50 == 0`) is registered and never enrolled (`expected`);
//!   the next one (`i % 50 == 1`) was renewed: a superseded certificate issued about
//!   600 days before its current one — so there are as many certificates as devices;
//! * issue times rise with `i` over the profile's validity less 5 days (a fleet produced batch after
//!   batch); validity is the profile's, from the issue time;
//! * exactly `revoked` current certificates are revoked, spread evenly over the fleet
//!   (Bresenham over the enrolled devices); their device is `revoked`, one in four
//!   `decommissioned` (cessationOfOperation).

use ca_service::audit::AuditEvent;
use ca_service::store::{CertRecord, CertStatus};
use rand::Rng;

use crate::template::Templates;

/// How long before its current certificate a renewed device got its first one.
const RENEWED_AFTER_SECS: i64 = 600 * 86_400;

/// The shape of the fleet.
#[derive(Clone, Debug)]
pub struct Layout {
    pub devices: u64,
    pub revoked: u64,
    pub batch_size: u64,
    /// Unix seconds: the fill's "now".
    pub now: i64,
    /// Configured model names (devices take them by batch in turn).
    pub models: Vec<String>,
    pub id_len: usize,
    /// The spread of issue times, seconds: the device profile's validity less 5 days
    /// (825 days: about two years), so that the oldest certificates are about to
    /// expire (the lifecycle reports find some) and none has.
    pub span: i64,
    /// The issuing CA (a name in table `cas`) and the device profile's name.
    pub issuer: String,
    pub profile: String,
}

/// A `devices` row.
#[derive(Debug)]
pub struct DeviceRow {
    pub device_id: String,
    pub model: String,
    pub batch: String,
    pub hardware_serial: String,
    pub state: &'static str,
    /// Unix microseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A `certificates` row (issuer and profile are the fill's).
#[derive(Debug)]
pub struct CertRow {
    pub serial_hex: String,
    pub device_id: String,
    pub status: &'static str,
    pub revoked_at: Option<i64>,
    pub reason: Option<i32>,
    pub public_key_sha256: String,
    /// Unix microseconds.
    pub created_at: i64,
    /// A station enrollment's CSR hash and station (renewals have none).
    pub request_sha256: Option<String>,
    pub requested_by: Option<String>,
    pub cert: crate::template::FilledCert,
}

/// The rows of a range of devices.
#[derive(Debug, Default)]
pub struct Chunk {
    pub devices: Vec<DeviceRow>,
    pub certs: Vec<CertRow>,
    /// (unix microseconds, event), in the order they happened per device.
    pub events: Vec<(i64, AuditEvent)>,
}

impl Layout {
    pub fn id_len_for(devices: u64) -> usize {
        3 + devices.to_string().len().max(8)
    }
    pub fn device_id(&self, i: u64) -> String {
        format!("SN-{:0w$}", i + 1, w = self.id_len - 3)
    }
    pub fn batch(&self, i: u64) -> String {
        format!("batch-{:04}", i / self.batch_size.max(1) + 1)
    }
    pub fn model_index(&self, i: u64) -> usize {
        (i / self.batch_size.max(1)) as usize % self.models.len().max(1)
    }
    pub fn expected(i: u64) -> bool {
        i.is_multiple_of(50)
    }
    fn renewed(i: u64) -> bool {
        i % 50 == 1
    }
    /// Enrolled devices before device `i`.
    fn enrolled_before(i: u64) -> u64 {
        i - i.div_ceil(50)
    }
    /// Whether device `i`'s current certificate is revoked (exactly `revoked` are).
    pub fn revoked(&self, i: u64) -> bool {
        let total = u128::from(Self::enrolled_before(self.devices).max(1));
        let (c, m) = (u128::from(Self::enrolled_before(i)), u128::from(self.revoked).min(total));
        !Self::expected(i) && (c + 1) * m / total > c * m / total
    }
    pub fn issued_at(&self, i: u64) -> i64 {
        let offset = i128::from(i) * i128::from(self.span) / i128::from(self.devices.max(1));
        self.now - self.span + i64::try_from(offset).unwrap_or(0)
    }
    /// Audit events of the devices before `i` (registrations, issuances, revocations),
    /// in closed form: a chunk numbers its entries without waiting for the chunks
    /// before it.
    pub fn events_before(&self, i: u64) -> u64 {
        let registrations = i.div_ceil(self.batch_size.max(1));
        let renewed = if i < 2 { 0 } else { (i - 2) / 50 + 1 };
        let total = u128::from(Self::enrolled_before(self.devices).max(1));
        let m = u128::from(self.revoked).min(total);
        let revoked = u64::try_from(u128::from(Self::enrolled_before(i)) * m / total).unwrap_or(u64::MAX);
        registrations + Self::enrolled_before(i) + renewed + revoked
    }

    /// How many certificates the fleet has: one per enrolled device, and the renewed
    /// devices' superseded ones (as many as there are devices when 50 divides them).
    pub fn certificates(&self) -> u64 {
        let renewed = if self.devices < 2 { 0 } else { (self.devices - 2) / 50 + 1 };
        Self::enrolled_before(self.devices) + renewed
    }

    /// The rows of devices `from..to`.
    pub fn chunk(&self, templates: &Templates, from: u64, to: u64) -> anyhow::Result<Chunk> {
        let mut rng = rand::rng();
        let mut out = Chunk::default();
        let issuer = self.issuer.as_str();
        for i in from..to {
            let id = self.device_id(i);
            let batch = self.batch(i);
            let model = self.model_index(i);
            let issued = self.issued_at(i);
            let registered = (issued - 86_400) * 1_000_000;
            if i.is_multiple_of(self.batch_size.max(1)) {
                let size = self.batch_size.min(self.devices - i);
                let e = AuditEvent::success("cli:operator", "device.register", format!("batch:{batch}"))
                    .with_details(serde_json::json!({ "devices": size, "reprovision": false }));
                out.events.push((registered, e));
            }
            let mut device = DeviceRow {
                device_id: id.clone(),
                model: self.models.get(model).cloned().unwrap_or_else(|| "generic".into()),
                batch,
                hardware_serial: format!("HW{:012x}", rng.random::<u64>() >> 16),
                state: "expected",
                created_at: registered,
                updated_at: registered,
            };
            if Self::expected(i) {
                out.devices.push(device);
                continue;
            }
            let station = format!("station:line-{}:{:016x}", 1 + i % 8, 0x5eed_0000_u64 + i % 8);
            if Self::renewed(i) {
                let old = self.cert_row(templates, model, &id, issued - RENEWED_AFTER_SECS, true)?;
                out.events.push((old.created_at, self.issue_event(&station, &old)));
                let mut old = old;
                old.status = "superseded";
                out.certs.push(old);
            }
            let mut cert = self.cert_row(templates, model, &id, issued, !Self::renewed(i))?;
            let actor =
                if Self::renewed(i) { format!("device:{id}:{}", &cert.cert.fingerprint[..16]) } else { station };
            out.events.push((cert.created_at, self.issue_event(&actor, &cert)));
            device.state = "active";
            device.updated_at = cert.created_at;
            if self.revoked(i) {
                let at = rng.random_range(issued..(self.now - 120).max(issued + 1));
                let decommissioned = rng.random_ratio(1, 4);
                let reason = if decommissioned { 5 } else { [0, 1, 1, 3, 4][rng.random_range(0..5)] };
                let name = ca_service::revoke::reason_name(revocation_reason(reason));
                let target = if decommissioned {
                    format!("device:{id}")
                } else {
                    format!("certificate:{issuer}/{}", cert.serial_hex)
                };
                let action = if decommissioned {
                    ca_service::revoke::DEVICES_ACTION
                } else {
                    ca_service::revoke::CERTIFICATE_ACTION
                };
                let details = serde_json::json!({ "reason": name, "reason_code": reason, "via": "api" });
                out.events.push((
                    at * 1_000_000,
                    AuditEvent::success("token:operations", action, target).with_details(details),
                ));
                (cert.status, cert.revoked_at, cert.reason) = ("revoked", Some(at), Some(reason));
                device.state = if decommissioned { "decommissioned" } else { "revoked" };
                device.updated_at = at * 1_000_000;
            }
            out.certs.push(cert);
            out.devices.push(device);
        }
        Ok(out)
    }

    fn cert_row(&self, t: &Templates, model: usize, id: &str, issued: i64, station: bool) -> anyhow::Result<CertRow> {
        let serial = ca_service::profile::random_serial();
        let mut rng = rand::rng();
        let hex64 = |rng: &mut rand::rngs::ThreadRng| hex::encode(rng.random::<[u8; 32]>());
        Ok(CertRow {
            serial_hex: hex::encode(serial),
            device_id: id.to_string(),
            status: "valid",
            revoked_at: None,
            reason: None,
            // Every device has its own key: the template's public key is shared, but
            // its hash column is one per row (the compromised-key index sees distinct keys).
            public_key_sha256: hex64(&mut rng),
            created_at: issued * 1_000_000 + rng.random_range(0..1_000_000),
            request_sha256: station.then(|| hex64(&mut rng)),
            requested_by: station.then(|| format!("line-{}", 1 + rng.random_range(0..8))),
            cert: t.cert(model, &serial, id, issued)?,
        })
    }

    /// The service's own `certificate.issue` event for a row.
    fn issue_event(&self, actor: &str, row: &CertRow) -> AuditEvent {
        ca_service::issuance::issuance_event(actor, &self.record(row))
    }

    fn record(&self, row: &CertRow) -> CertRecord {
        CertRecord {
            issuer: self.issuer.clone(),
            serial: hex::decode(&row.serial_hex).unwrap_or_default(),
            subject: row.cert.subject.clone(),
            device_id: Some(row.device_id.clone()),
            profile: self.profile.clone(),
            not_before: row.cert.not_before,
            not_after: row.cert.not_after,
            status: CertStatus::Valid,
            revoked_at: None,
            revocation_reason: None,
            fingerprint: row.cert.fingerprint.clone(),
            public_key_sha256: row.public_key_sha256.clone(),
            der: Vec::new(),
            crl_shard: row.cert.crl_shard,
        }
    }
}

fn revocation_reason(code: i32) -> revocation::Reason {
    u8::try_from(code).ok().and_then(revocation::Reason::from_code).unwrap_or(revocation::Reason::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(devices: u64, revoked: u64) -> Layout {
        Layout {
            devices,
            revoked,
            batch_size: 100,
            now: 1_800_000_000,
            models: vec!["generic".into()],
            id_len: Layout::id_len_for(devices),
            span: 820 * 86_400,
            issuer: "device".into(),
            profile: "device".into(),
        }
    }

    /// Exactly `revoked` current certificates are revoked (no more than there are),
    /// never an unenrolled device's, and `certificates()` counts what `chunk` makes.
    #[test]
    fn counts_are_exact() {
        for (n, m) in [(1, 1), (2, 1), (49, 5), (50, 50), (51, 60), (1234, 123), (100_000, 10_000)] {
            let l = layout(n, m);
            let revoked = (0..n).filter(|&i| l.revoked(i)).count() as u64;
            let enrolled = (0..n).filter(|&i| !Layout::expected(i)).count() as u64;
            assert_eq!(revoked, m.min(enrolled), "{n} devices, {m} to revoke");
            assert!((0..n).all(|i| !(Layout::expected(i) && l.revoked(i))));
            let certs = enrolled + (0..n).filter(|&i| Layout::renewed(i)).count() as u64;
            assert_eq!(l.certificates(), certs, "{n} devices");
        }
        assert_eq!(layout(10_000_000, 0).certificates(), 10_000_000);
        // The closed form agrees with what the chunks make.
        let config = ca_service::config::Config::default();
        let l = layout(1234, 123);
        let templates = crate::template::tests::templates(&config);
        let mut made = 0;
        for from in (0..1234).step_by(100) {
            assert_eq!(l.events_before(from), made, "before device {from}");
            made += l.chunk(&templates, from, (from + 100).min(1234)).unwrap().events.len() as u64;
        }
        assert_eq!(l.events_before(1234), made);
        assert_eq!(layout(10_000_000, 0).device_id(9_999_999), "SN-10000000");
        assert_eq!(layout(10_000_000, 0).batch(9_999_999), "batch-100000");
    }
}
