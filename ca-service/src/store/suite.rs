//! The storage test suite, written once and run against both backends
//! (DESIGN invariant 5): `store::suite::sqlite::*` and `store::suite::postgres::*`.
//!
//! PostgreSQL tests need a server: `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`) is the admin
//! connection; every test creates its own database `pki_test_<pid>_<random>` there and
//! drops it afterwards (also when the test fails). An unreachable server fails the
//! PostgreSQL tests; they are never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::*;
use crate::audit::{self, AuditEntry, AuditEvent, ChainBreak, GENESIS_HASH};

// ---------------------------------------------------------------------------------
// Harness

/// Direct access to the database behind a store, bypassing it (to tamper) and to open
/// a second, independent store instance on the same database.
#[async_trait]
trait Backend: Send + Sync {
    /// Runs raw SQL (several statements allowed) directly against the database.
    async fn exec_sql(&self, sql: &str);
    /// Another store instance on the same database (own connections).
    async fn second_instance(&self) -> Arc<dyn Store>;
    /// Whether several service instances may share this database (jobs then lock).
    fn shared_by_processes(&self) -> bool;
}

struct Harness {
    store: Arc<dyn Store>,
    backend: Box<dyn Backend>,
}

impl Harness {
    fn store(&self) -> &dyn Store {
        &*self.store
    }
}

// --- SQLite

struct SqliteBackend {
    dir: tempfile::TempDir,
}

impl SqliteBackend {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("pki.db")
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn exec_sql(&self, sql: &str) {
        let path = self.path();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch(&sql).unwrap();
        })
        .await
        .unwrap();
    }

    fn shared_by_processes(&self) -> bool {
        false
    }

    async fn second_instance(&self) -> Arc<dyn Store> {
        let path = self.path();
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(path)).await.unwrap().unwrap())
    }
}

async fn sqlite_harness() -> Harness {
    let backend = SqliteBackend { dir: tempfile::tempdir().unwrap() };
    let path = backend.path();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(path)).await.unwrap().unwrap();
    Harness { store: Arc::new(store), backend: Box::new(backend) }
}

// --- PostgreSQL

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

fn admin_config() -> (tokio_postgres::Config, String) {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let mut config = tokio_postgres::Config::from_str(&url)
        .unwrap_or_else(|e| panic!("DATABASE_URL is not a valid PostgreSQL connection string: {e}"));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let shown = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(h)), Some(p)) => format!("{h}:{p}"),
        _ => "the server named by DATABASE_URL".to_owned(),
    };
    (config, shown)
}

async fn admin_client(config: &tokio_postgres::Config, shown: &str) -> tokio_postgres::Client {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL tests need a reachable server: cannot connect to {shown} \
             (set DATABASE_URL, default {DEFAULT_DATABASE_URL}): {e}"
        )
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A throw-away database; dropped (WITH (FORCE)) when this guard drops, even on panic.
struct TestDatabase {
    admin: tokio_postgres::Config,
    name: String,
    config: tokio_postgres::Config,
}

impl TestDatabase {
    async fn create() -> Self {
        let (admin, shown) = admin_config();
        let name = format!("pki_test_{}_{:016x}", std::process::id(), rand::random::<u64>());
        let client = admin_client(&admin, &shown).await;
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let mut config = admin.clone();
        config.dbname(&name);
        Self { admin, name, config }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Our own runtime on our own thread: Drop may run inside (or while unwinding
        // out of) the test's runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let (client, conn) = admin.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client.batch_execute(&sql).await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

struct PostgresBackend {
    db: TestDatabase,
}

#[async_trait]
impl Backend for PostgresBackend {
    fn shared_by_processes(&self) -> bool {
        true
    }

    async fn exec_sql(&self, sql: &str) {
        let (client, conn) = self.db.config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute(sql).await.unwrap();
    }

    async fn second_instance(&self) -> Arc<dyn Store> {
        Arc::new(PostgresStore::connect_with_config(self.db.config.clone()).await.unwrap())
    }
}

async fn postgres_harness() -> Harness {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect_with_config(db.config.clone()).await.unwrap();
    Harness { store: Arc::new(store), backend: Box::new(PostgresBackend { db }) }
}

/// Generates `sqlite::<name>` and `postgres::<name>` for each shared test.
macro_rules! both_backends {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::sqlite_harness().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::postgres_harness().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

both_backends!(
    ping_and_empty_reads,
    ca_create_get_list,
    ca_duplicate_is_already_exists,
    ca_update_certificate,
    hierarchy_is_stored_whole_or_not_at_all,
    enrollment_effects_are_atomic_with_the_certificate,
    stations_add_get_list,
    enrollment_contexts_read_what_each_key_names,
    compromised_keys_are_refused_when_stored,
    api_tokens_add_get_revoke_list,
    latest_valid_certificate_of_a_profile,
    enrollment_requests_wait_for_one_final_decision,
    update_requests_need_two_distinct_approvers,
    update_requests_expired_or_rejected_are_never_signed,
    revocation_is_audited_once_and_feeds_the_crl,
    revoking_a_device_revokes_all_its_certificates,
    revoking_a_batch_or_a_model_revokes_exactly_its_devices,
    crl_shards_deltas_and_published_crls,
    certificate_keys_page_in_id_order,
    certificate_round_trip,
    serial_taken_in_later_batch,
    serial_taken_within_batch,
    same_serial_other_issuer,
    failed_batch_stores_nothing,
    certificates_for_device_newest_first,
    devices_add_get,
    devices_duplicate_stores_nothing,
    audit_records_every_write_in_order,
    tamper_edit_detected,
    tamper_delete_detected,
    concurrent_store_certificates,
    two_instances_one_chain,
    #[ignore = "throughput measurement; run with --ignored --nocapture"]
    throughput,
);

// ---------------------------------------------------------------------------------
// Fixtures

fn event(action: &str, target: &str) -> AuditEvent {
    AuditEvent::success("cli:test", action, target)
}

fn ca(name: &str, parent: Option<&str>) -> CaRecord {
    CaRecord {
        name: name.into(),
        cert_der: format!("cert of {name}").into_bytes(),
        key_store: "soft".into(),
        key_label: format!("{name}-key"),
        parent: parent.map(Into::into),
    }
}

async fn create_ca(s: &dyn Store, name: &str) {
    s.create_ca(&ca(name, None), event("ca.init", &format!("ca:{name}"))).await.unwrap();
}

fn cert(issuer: &str, serial: &[u8], device: Option<&str>) -> CertRecord {
    let hex = hex::encode(serial);
    CertRecord {
        issuer: issuer.into(),
        serial: serial.to_vec(),
        subject: format!("CN={}", device.unwrap_or("station")),
        device_id: device.map(Into::into),
        profile: "device".into(),
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        status: CertStatus::Valid,
        revoked_at: None,
        revocation_reason: None,
        fingerprint: format!("{hex:0>64}"),
        public_key_sha256: format!("{:0>64}", format!("{hex}ff")),
        der: [b"der:".as_slice(), serial].concat(),
        crl_shard: 0,
    }
}

fn issue(c: CertRecord) -> Issuance {
    let audit = event("certificate.issue", &format!("certificate:{}/{}", c.issuer, hex::encode(&c.serial)))
        .with_details(serde_json::json!({ "profile": c.profile }));
    Issuance::new(c, audit)
}

fn device(id: &str, batch: &str) -> DeviceRecord {
    DeviceRecord {
        device_id: id.into(),
        model: "sensor-v2".into(),
        class: "sensor".into(),
        batch: batch.into(),
        hardware_serial: Some(format!("HW-{id}")),
        state: DeviceState::Expected,
        reprovision: false,
    }
}

/// All entries, read in pages of `page`.
async fn all_entries(s: &dyn Store, page: i64) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let got = s.audit_entries(after, page).await.unwrap();
        assert!(got.len() as i64 <= page);
        let done = (got.len() as i64) < page;
        out.extend(got);
        if done {
            return out;
        }
    }
}

/// Verifies the whole log page by page, as `ca-service audit verify` would.
async fn verify_log(s: &dyn Store, page: i64) -> Result<(i64, [u8; 32]), ChainBreak> {
    let mut head = (0, GENESIS_HASH);
    let mut after = 0;
    loop {
        let entries = s.audit_entries(after, page).await.unwrap();
        let Some(last) = entries.last() else {
            return Ok(head);
        };
        after = last.seq;
        head = audit::verify(head, &entries)?;
    }
}

fn events_of(entries: &[AuditEntry]) -> Vec<AuditEvent> {
    entries.iter().map(|e| e.event.clone()).collect()
}

// ---------------------------------------------------------------------------------
// Tests

async fn ping_and_empty_reads(h: &Harness) {
    let s = h.store();
    s.ping().await.unwrap();
    assert_eq!(s.get_ca("device").await.unwrap(), None);
    assert!(s.list_cas().await.unwrap().is_empty());
    assert_eq!(s.get_certificate("device", &[1, 2, 3]).await.unwrap(), None);
    assert!(s.certificates_for_device("d-1").await.unwrap().is_empty());
    assert_eq!(s.get_device("d-1").await.unwrap(), None);
    assert!(s.audit_entries(0, 100).await.unwrap().is_empty());
    // Empty writes are no-ops and leave no audit entry.
    assert!(s.store_certificates(&[]).await.unwrap().is_empty());
    s.append_audit(&[]).await.unwrap();
    assert!(s.audit_entries(0, 100).await.unwrap().is_empty());
    assert_eq!(verify_log(s, 10).await, Ok((0, GENESIS_HASH)));
}

async fn ca_create_get_list(h: &Harness) {
    let s = h.store();
    let root = ca("identity-root", None);
    let device = ca("device", Some("identity-root"));
    let station = ca("station", Some("identity-root"));
    let update = ca("update-root", None);
    for c in [&root, &device, &station, &update] {
        s.create_ca(c, event("ca.init", &format!("ca:{}", c.name))).await.unwrap();
    }
    assert_eq!(s.get_ca("device").await.unwrap(), Some(device.clone()));
    assert_eq!(s.get_ca("identity-root").await.unwrap(), Some(root.clone()));
    assert_eq!(s.get_ca("nope").await.unwrap(), None);
    // Creation order, not name order.
    assert_eq!(s.list_cas().await.unwrap(), vec![root, device, station, update]);
}

async fn ca_duplicate_is_already_exists(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut other = ca("device", None);
    other.key_label = "other".into();
    let err = s.create_ca(&other, event("ca.init", "ca:device")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("device")), "{err:?}");
    // The original is untouched and the refused write left no audit entry.
    assert_eq!(s.get_ca("device").await.unwrap(), Some(ca("device", None)));
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
}

async fn ca_update_certificate(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.update_ca_certificate("device", b"renewed", None, event("ca.renew", "ca:device")).await.unwrap();
    let got = s.get_ca("device").await.unwrap().unwrap();
    assert_eq!(got.cert_der, b"renewed");
    assert_eq!(got.key_label, "device-key");
    assert_eq!(got.parent, None);

    let err = s.update_ca_certificate("nope", b"x", None, event("ca.renew", "ca:nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(ref m) if m.contains("nope")), "{err:?}");
    // Re-parenting (an import signed by another stored CA) is recorded.
    create_ca(s, "root").await;
    s.update_ca_certificate("device", b"signed-by-root", Some("root"), event("ca.import", "ca:device")).await.unwrap();
    assert_eq!(s.get_ca("device").await.unwrap().unwrap().parent.as_deref(), Some("root"));
    let actions: Vec<String> = s.audit_entries(0, 100).await.unwrap().into_iter().map(|e| e.event.action).collect();
    assert_eq!(actions, ["ca.init", "ca.renew", "ca.init", "ca.import"]);
}

async fn hierarchy_is_stored_whole_or_not_at_all(h: &Harness) {
    let s = h.store();
    let cas = [
        (ca("root", None), event("ca.create", "ca:root")),
        (ca("device", Some("root")), event("ca.create", "ca:device")),
    ];
    // The second OCSP certificate repeats the first one's serial: the whole ceremony fails.
    let clash = [issue(cert("device", &[7], None)), issue(cert("device", &[7], None))];
    let err = s.create_hierarchy(&cas, &clash).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("07")), "{err:?}");
    assert!(s.list_cas().await.unwrap().is_empty(), "no CA may remain from a failed ceremony");
    assert!(s.audit_entries(0, 10).await.unwrap().is_empty());

    let ocsp = [issue(cert("device", &[7], None))];
    s.create_hierarchy(&cas, &ocsp).await.unwrap();
    let names: Vec<String> = s.list_cas().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["root", "device"], "parents first, in creation order");
    assert!(s.get_certificate("device", &[7]).await.unwrap().is_some());
    let actions: Vec<String> = s.audit_entries(0, 10).await.unwrap().into_iter().map(|e| e.event.action).collect();
    assert_eq!(actions, ["ca.create", "ca.create", "certificate.issue"]);
}

async fn enrollment_effects_are_atomic_with_the_certificate(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut again = device("d-2", "b-1");
    again.reprovision = true;
    s.add_devices(&[device("d-1", "b-1"), again], event("device.register", "batch:b-1")).await.unwrap();
    let activate = |id: &str, allow| IssuanceEffect::ActivateDevice { device_id: id.into(), allow_reprovision: allow };
    let with = |serial: u8, effect| Issuance { effect: Some(effect), ..issue(cert("device", &[serial], Some("d-1"))) };
    let entries = || async { s.audit_entries(0, 100).await.unwrap().len() };
    let before = entries().await;

    // Two enrollments of one device in one batch: the first wins, the second stores nothing.
    let out = s.store_certificates(&[with(1, activate("d-1", false)), with(2, activate("d-1", false))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert!(matches!(&out[1], IssuanceOutcome::Refused(r) if r.contains("d-1")), "{out:?}");
    assert_eq!(s.get_device("d-1").await.unwrap().unwrap().state, DeviceState::Active);
    assert!(s.get_certificate("device", &[2]).await.unwrap().is_none(), "refused certificate must not be stored");
    assert_eq!(entries().await, before + 1, "only the stored certificate is audited");

    // An active device enrolls again only where re-provisioning is allowed.
    let out = s.store_certificates(&[with(3, activate("d-1", false))]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)));
    let out = s.store_certificates(&[with(4, activate("d-2", true)), with(5, activate("d-2", true))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    let out = s.store_certificates(&[with(6, activate("d-2", true))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored, "re-provisioning of an active device");
    // Re-provisioning replaces the device's earlier certificate.
    let mut reprovisioned = cert("device", &[10], Some("d-2"));
    reprovisioned.device_id = Some("d-2".into());
    let first = Issuance { effect: Some(activate("d-2", true)), ..issue(reprovisioned) };
    let mut again = cert("device", &[11], Some("d-2"));
    again.device_id = Some("d-2".into());
    let second = Issuance { effect: Some(activate("d-2", true)), ..issue(again) };
    assert_eq!(s.store_certificates(&[first]).await.unwrap()[0], IssuanceOutcome::Stored);
    assert_eq!(s.store_certificates(&[second]).await.unwrap()[0], IssuanceOutcome::Stored);
    assert_eq!(s.get_certificate("device", &[10]).await.unwrap().unwrap().status, CertStatus::Superseded);
    assert_eq!(s.get_certificate("device", &[11]).await.unwrap().unwrap().status, CertStatus::Valid);

    // Renewal supersedes the current certificate once; a second renewal of it is refused.
    let supersede = IssuanceEffect::Supersede { issuer: "device".into(), serial: vec![1] };
    let out = s.store_certificates(&[with(7, supersede.clone())]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert_eq!(s.get_certificate("device", &[1]).await.unwrap().unwrap().status, CertStatus::Superseded);
    let out = s.store_certificates(&[with(8, supersede)]).await.unwrap();
    assert!(matches!(&out[0], IssuanceOutcome::Refused(r) if r.contains("no longer valid")), "{out:?}");
    assert!(s.get_certificate("device", &[8]).await.unwrap().is_none());

    // A serial clash is still reported as such, and its effect is not applied.
    let mut third = device("d-3", "b-1");
    third.device_id = "d-3".into();
    s.add_devices(&[third], event("device.register", "batch:b-1")).await.unwrap();
    let out = s.store_certificates(&[with(7, activate("d-3", false))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::SerialTaken);
    assert_eq!(s.get_device("d-3").await.unwrap().unwrap().state, DeviceState::Expected);
}

async fn enrollment_requests_wait_for_one_final_decision(h: &Harness) {
    let s = h.store();
    let req = |id: &str| EnrollmentRequest {
        id: id.into(),
        profile: "device".into(),
        device_id: format!("dev-{id}"),
        requester: "station:line-1".into(),
        status: RequestStatus::Pending,
        decided_by: None,
        issued: None,
    };
    let first = s.submit_enrollment_request(&req("a"), event("est.request", "request:a")).await.unwrap();
    assert_eq!(first, req("a"));
    // The station's retry finds the same request; only the first submission is audited.
    let again = s.submit_enrollment_request(&req("a"), event("est.request", "request:a")).await.unwrap();
    assert_eq!(again.status, RequestStatus::Pending);
    assert_eq!(s.audit_entries(0, 10).await.unwrap().len(), 1);

    s.submit_enrollment_request(&req("b"), event("est.request", "request:b")).await.unwrap();
    s.decide_enrollment_request("a", true, "cli:alice", event("est.approve", "request:a")).await.unwrap();
    s.decide_enrollment_request("b", false, "cli:alice", event("est.reject", "request:b")).await.unwrap();
    let err = s.decide_enrollment_request("b", true, "cli:bob", event("est.approve", "request:b")).await.unwrap_err();
    assert!(err.to_string().contains("already rejected"), "{err}");
    let err = s.decide_enrollment_request("zz", true, "cli:bob", event("est.approve", "request:zz")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // A rejected request cannot be issued; an approved one is, once.
    assert!(s.mark_enrollment_request_issued("b", "device", &[1]).await.is_err());
    s.mark_enrollment_request_issued("a", "device", &[9, 9]).await.unwrap();
    assert!(s.mark_enrollment_request_issued("a", "device", &[9, 9]).await.is_err());
    let a = s.get_enrollment_request("a").await.unwrap().unwrap();
    assert_eq!(a.status, RequestStatus::Issued);
    assert_eq!(a.decided_by.as_deref(), Some("cli:alice"));
    assert_eq!(a.issued, Some(("device".to_string(), vec![9, 9])));
    let rejected = s.list_enrollment_requests(Some(RequestStatus::Rejected)).await.unwrap();
    assert_eq!(rejected.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(s.list_enrollment_requests(None).await.unwrap().len(), 2);
    assert_eq!(s.audit_entries(0, 10).await.unwrap().len(), 4, "submit a, submit b, approve a, reject b");
}

fn update_request(id: &str, expires_in: i64) -> UpdateRequest {
    let now = crate::issuance::unix(std::time::SystemTime::now());
    UpdateRequest {
        id: id.into(),
        profile: "update-signing".into(),
        csr_der: b"csr".to_vec(),
        classes: vec!["gateway".into(), "sensor".into()],
        validity_days: 30,
        requester: "rm".into(),
        status: RequestStatus::Pending,
        approvals: Vec::new(),
        rejected_by: None,
        reason: None,
        issued: None,
        created_at: now,
        expires_at: now + expires_in,
    }
}

fn fulfil(c: CertRecord, id: &str) -> Issuance {
    Issuance { effect: Some(IssuanceEffect::FulfilUpdateRequest { id: id.into() }), ..issue(c) }
}

async fn update_requests_need_two_distinct_approvers(h: &Harness) {
    let s = h.store();
    create_ca(s, "update-authority").await;
    s.submit_update_request(&update_request("u1", 3600), event("update-request.submit", "u1")).await.unwrap();
    let dup = s.submit_update_request(&update_request("u1", 3600), event("update-request.submit", "u1")).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))), "{dup:?}");
    let approve = |who: &'static str| s.approve_update_request("u1", who, 2, event("update-request.approve", "u1"));

    let err = approve("rm").await.unwrap_err();
    assert!(err.to_string().contains("submitted update request"), "the requester approved: {err}");
    // Not approved yet: the certificate cannot be stored.
    let early = s.store_certificates(&[fulfil(cert("update-authority", &[1], None), "u1")]).await.unwrap();
    assert!(matches!(early[0], IssuanceOutcome::Refused(_)), "{early:?}");
    assert!(s.get_certificate("update-authority", &[1]).await.unwrap().is_none());

    let one = approve("alice").await.unwrap();
    assert_eq!((one.status, one.approvals.clone()), (RequestStatus::Pending, vec!["alice".to_string()]));
    let err = approve("alice").await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "one approver twice: {err}");
    let two = approve("bob").await.unwrap();
    assert_eq!(two.status, RequestStatus::Approved);
    assert_eq!(two.approvals, ["alice", "bob"]);
    assert_eq!(two.classes, ["gateway", "sensor"]);
    let err = approve("carol").await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "{err}");

    // Signed once; the second attempt (e.g. a concurrent retry) is refused.
    let out = s
        .store_certificates(&[
            fulfil(cert("update-authority", &[2], None), "u1"),
            fulfil(cert("update-authority", &[3], None), "u1"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert!(matches!(out[1], IssuanceOutcome::Refused(_)), "{out:?}");
    assert!(s.get_certificate("update-authority", &[3]).await.unwrap().is_none());
    let done = s.get_update_request("u1").await.unwrap().unwrap();
    assert_eq!(done.status, RequestStatus::Issued);
    assert_eq!(done.issued, Some(("update-authority".to_string(), vec![2])));
    let rejected = s.reject_update_request("u1", "alice", "late", event("update-request.reject", "u1")).await;
    assert!(matches!(rejected, Err(StoreError::Conflict(_))), "{rejected:?}");
}

async fn update_requests_expired_or_rejected_are_never_signed(h: &Harness) {
    let s = h.store();
    create_ca(s, "update-authority").await;
    for (id, ttl) in [("live", 3600), ("stale", -1), ("lapsed", 3600), ("refused", 3600)] {
        s.submit_update_request(&update_request(id, ttl), event("update-request.submit", id)).await.unwrap();
    }
    let err = s.approve_update_request("stale", "alice", 2, event("a", "stale")).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = s.approve_update_request("nope", "alice", 2, event("a", "nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Approved, then its deadline passes before signing: never signed.
    s.approve_update_request("lapsed", "alice", 2, event("a", "lapsed")).await.unwrap();
    s.approve_update_request("lapsed", "bob", 2, event("a", "lapsed")).await.unwrap();
    h.backend.exec_sql("UPDATE update_requests SET expires_at = 1 WHERE id = 'lapsed'").await;
    let out = s.store_certificates(&[fulfil(cert("update-authority", &[7], None), "lapsed")]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)), "an expired approved request was signed: {out:?}");

    s.reject_update_request("refused", "alice", "wrong key", event("r", "refused")).await.unwrap();
    let err = s.approve_update_request("refused", "bob", 2, event("a", "refused")).await.unwrap_err();
    assert!(err.to_string().contains("already rejected"), "{err}");
    let out = s.store_certificates(&[fulfil(cert("update-authority", &[8], None), "refused")]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)), "{out:?}");
    let r = s.get_update_request("refused").await.unwrap().unwrap();
    assert_eq!((r.rejected_by.as_deref(), r.reason.as_deref()), (Some("alice"), Some("wrong key")));

    let pending = s.list_update_requests(Some(RequestStatus::Pending)).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["live", "stale"]);
    assert_eq!(s.list_update_requests(None).await.unwrap().len(), 4);
}

async fn revocation_is_audited_once_and_feeds_the_crl(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let mut expired = cert("device", &[3], None);
    expired.not_after = 100;
    let batch = [
        issue(cert("device", &[1], None)),
        issue(cert("device", &[2], None)),
        issue(expired),
        issue(cert("station", &[1], None)),
    ];
    s.store_certificates(&batch).await.unwrap();
    let before = s.audit_entries(0, 100).await.unwrap().len();

    let r = s
        .revoke_certificate(
            "device",
            &[2],
            Reason::KeyCompromise,
            1_700_000_000,
            event("certificate.revoke", "certificate:device/02"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.revoked_at, r.revocation_reason),
        (CertStatus::Revoked, Some(1_700_000_000), Some(Reason::KeyCompromise))
    );
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap().unwrap().status, CertStatus::Revoked);
    let err = s
        .revoke_certificate("device", &[2], Reason::KeyCompromise, 1_700_000_001, event("certificate.revoke", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s
        .revoke_certificate("device", &[9], Reason::KeyCompromise, 1_700_000_001, event("certificate.revoke", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    s.revoke_certificate(
        "device",
        &[3],
        Reason::Superseded,
        1_700_000_002,
        event("certificate.revoke", "certificate:device/03"),
    )
    .await
    .unwrap();
    s.revoke_certificate(
        "station",
        &[1],
        Reason::Unspecified,
        1_700_000_003,
        event("certificate.revoke", "certificate:station/01"),
    )
    .await
    .unwrap();
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), before + 3, "one entry per revocation");

    // The CRL takes the issuer's unexpired revocations only.
    let crl = s.revoked_for_crl("device", 1_000, None, None).await.unwrap();
    assert_eq!(crl, vec![(vec![2], 1_700_000_000, Some(Reason::KeyCompromise))]);
    assert_eq!(s.revoked_for_crl("station", 1_000, None, None).await.unwrap().len(), 1);

    // CRL numbers are monotonic per issuer and survive a second store instance.
    assert_eq!(s.next_crl_number("device").await.unwrap(), 1);
    assert_eq!(s.next_crl_number("device").await.unwrap(), 2);
    assert_eq!(s.next_crl_number("station").await.unwrap(), 1);
    let other = h.backend.second_instance().await;
    assert_eq!(other.next_crl_number("device").await.unwrap(), 3);
}

async fn revoking_a_device_revokes_all_its_certificates(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.add_devices(&[device("d-1", "b"), device("d-2", "b")], event("device.register", "batch:b")).await.unwrap();
    let mut superseded = cert("device", &[1], Some("d-1"));
    superseded.status = CertStatus::Superseded;
    let mut compromised = cert("device", &[2], Some("d-1"));
    compromised.public_key_sha256 = "ab".repeat(32);
    let batch = [issue(superseded), issue(compromised), issue(cert("device", &[3], Some("d-2")))];
    s.store_certificates(&batch).await.unwrap();
    assert!(!s.public_key_compromised(&"ab".repeat(32)).await.unwrap());

    let before = s.audit_entries(0, 100).await.unwrap().len();
    let revoked = s
        .revoke_device("d-1", Reason::KeyCompromise, 1_700_000_000, event("device.revoke", "device:d-1"))
        .await
        .unwrap();
    let mut serials: Vec<Vec<u8>> = revoked.iter().map(|c| c.serial.clone()).collect();
    serials.sort();
    assert_eq!(serials, vec![vec![1], vec![2]], "superseded certificates are revoked too");
    assert_eq!(s.get_device("d-1").await.unwrap().unwrap().state, DeviceState::Revoked);
    for serial in [[1u8], [2]] {
        let c = s.get_certificate("device", &serial).await.unwrap().unwrap();
        assert_eq!((c.status, c.revocation_reason), (CertStatus::Revoked, Some(Reason::KeyCompromise)));
    }
    assert_eq!(
        s.get_certificate("device", &[3]).await.unwrap().unwrap().status,
        CertStatus::Valid,
        "other devices untouched"
    );
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), before + 1);
    assert!(s.public_key_compromised(&"ab".repeat(32)).await.unwrap(), "keyCompromise blocks the key");
    let err =
        s.revoke_device("nope", Reason::KeyCompromise, 1, event("device.revoke", "device:nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn revoking_a_batch_or_a_model_revokes_exactly_its_devices(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut other_model = device("m-1", "b2");
    other_model.model = "gateway-v1".into();
    let devices = [device("a-1", "b1"), device("a-2", "b1"), device("c-1", "b2"), other_model];
    s.add_devices(&devices, event("device.register", "batches")).await.unwrap();
    let certs: Vec<Issuance> = ["a-1", "a-2", "c-1", "m-1"]
        .iter()
        .enumerate()
        .map(|(i, d)| issue(cert("device", &[i as u8 + 1], Some(d))))
        .collect();
    s.store_certificates(&certs).await.unwrap();

    let (n, revoked) = s
        .revoke_devices(
            &DeviceSelector::Batch("b1".into()),
            Reason::CessationOfOperation,
            1_700_000_000,
            event("device.revoke", "batch:b1"),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(revoked.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(), [vec![1], vec![2]]);
    for d in ["a-1", "a-2"] {
        assert_eq!(s.get_device(d).await.unwrap().unwrap().state, DeviceState::Revoked);
    }
    assert_eq!(s.get_device("c-1").await.unwrap().unwrap().state, DeviceState::Expected, "other batch untouched");
    assert_eq!(s.get_certificate("device", &[3]).await.unwrap().unwrap().status, CertStatus::Valid);

    let (n, revoked) = s
        .revoke_devices(
            &DeviceSelector::Model("gateway-v1".into()),
            Reason::CessationOfOperation,
            1_700_000_000,
            event("device.revoke", "model"),
        )
        .await
        .unwrap();
    assert_eq!((n, revoked.len()), (1, 1));
    assert_eq!(revoked[0].serial, [4]);
    assert_eq!(s.get_certificate("device", &[3]).await.unwrap().unwrap().status, CertStatus::Valid);
    let err = s
        .revoke_devices(
            &DeviceSelector::Batch("none".into()),
            Reason::CessationOfOperation,
            1,
            event("device.revoke", "b"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn crl_shards_deltas_and_published_crls(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut certs = Vec::new();
    for (serial, shard) in [(1u8, 0u32), (2, 1), (3, 1), (4, 0)] {
        let mut c = cert("device", &[serial], None);
        c.crl_shard = shard;
        certs.push(issue(c));
    }
    s.store_certificates(&certs).await.unwrap();
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap().unwrap().crl_shard, 1, "shard round trip");
    for (serial, at) in [(1u8, 1_000), (2, 1_000), (3, 2_000)] {
        s.revoke_certificate("device", &[serial], Reason::Unspecified, at, event("certificate.revoke", "c"))
            .await
            .unwrap();
    }
    let serials = |v: Vec<(Vec<u8>, i64, Option<Reason>)>| v.into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
    assert_eq!(serials(s.revoked_for_crl("device", 0, None, None).await.unwrap()), [vec![1], vec![2], vec![3]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(1), None).await.unwrap()), [vec![2], vec![3]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(0), None).await.unwrap()), [vec![1]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, None, Some(1_500)).await.unwrap()), [vec![3]], "delta");
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(0), Some(1_500)).await.unwrap()), Vec::<Vec<u8>>::new());

    let crl = |number: u64, der: &[u8]| PublishedCrl {
        ca: "device".into(),
        name: "full".into(),
        number,
        base_number: None,
        this_update: 10,
        next_update: 20,
        der: der.to_vec(),
    };
    assert!(s.published_crl("device", "full").await.unwrap().is_none());
    s.publish_crls(&[crl(5, b"five")], event("crl.publish", "crls")).await.unwrap();
    // An older number (a slower instance) never replaces a newer CRL.
    s.publish_crls(&[crl(4, b"four")], event("crl.publish", "crls")).await.unwrap();
    assert_eq!(s.published_crl("device", "full").await.unwrap().unwrap().der, b"five");
    s.publish_crls(&[crl(6, b"six")], event("crl.publish", "crls")).await.unwrap();
    assert_eq!(s.published_crl("device", "full").await.unwrap().unwrap().number, 6);
    let head = s.published_crl_head("device", "full").await.unwrap();
    assert_eq!(head, Some(CrlHead { number: 6, this_update: 10, next_update: 20 }));
    assert!(s.published_crl_head("device", "delta").await.unwrap().is_none());

    // The job lock: while held, a second instance does not get it.
    let lock = s.try_job_lock("test-job").await.unwrap();
    assert!(lock.is_some());
    let other = h.backend.second_instance().await;
    let exclusive = other.try_job_lock("test-job").await.unwrap();
    if h.backend.shared_by_processes() {
        assert!(exclusive.is_none(), "two instances held the job lock");
        drop(lock);
        assert!(other.try_job_lock("test-job").await.unwrap().is_some(), "released on drop");
    }
}

async fn stations_add_get_list(h: &Harness) {
    let s = h.store();
    let st = StationRecord {
        name: "line-1".into(),
        enabled: true,
        models: vec!["sensor-v2".into()],
        batches: vec!["*".into()],
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
    };
    s.add_station(&st, event("station.add", "station:line-1")).await.unwrap();
    assert_eq!(s.get_station("line-1").await.unwrap(), Some(st.clone()));
    let err = s.add_station(&st, event("station.add", "station:line-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.list_stations().await.unwrap(), vec![st.clone()]);
    assert!(st.may_enroll(&device("d-1", "any-batch")));
    let mut other = device("d-1", "b-1");
    other.model = "gateway".into();
    assert!(!st.may_enroll(&other));
    assert!(s.get_station("nope").await.unwrap().is_none());
}

async fn enrollment_contexts_read_what_each_key_names(h: &Harness) {
    let s = h.store();
    create_ca(s, "station").await;
    create_ca(s, "device").await;
    let st = StationRecord {
        name: "line-1".into(),
        enabled: false,
        models: vec!["sensor-v2".into(), "gateway".into()],
        batches: vec!["*".into()],
        secret_hash: None,
    };
    s.add_station(&st, event("station.add", "station:line-1")).await.unwrap();
    s.add_devices(&[device("d-1", "b")], event("device.register", "batch:b")).await.unwrap();
    let mut station_cert = cert("station", &[7], None);
    station_cert.profile = "station".into();
    station_cert.status = CertStatus::Revoked;
    station_cert.revoked_at = Some(1_700_000_001);
    station_cert.revocation_reason = Some(Reason::KeyCompromise);
    s.store_certificates(&[issue(station_cert.clone())]).await.unwrap();

    let all = EnrollmentLookup {
        client_fingerprint: Some(station_cert.fingerprint.clone()),
        station: Some("line-1".into()),
        device_id: Some("d-1".into()),
    };
    // Each key is looked up on its own: a miss on one leaves the others found; and
    // every lookup of a batch gets its own answer, in order.
    let lookups = [
        EnrollmentLookup { client_fingerprint: Some("0".repeat(64)), ..all.clone() },
        all.clone(),
        EnrollmentLookup { station: Some("line-2".into()), ..all.clone() },
        EnrollmentLookup::default(),
        EnrollmentLookup { device_id: Some("d-2".into()), ..all.clone() },
    ];
    let found = s.enrollment_contexts(&lookups).await.unwrap();
    let shape: Vec<[bool; 3]> =
        found.iter().map(|c| [c.client.is_some(), c.station.is_some(), c.device.is_some()]).collect();
    assert_eq!(
        shape,
        vec![[false, true, true], [true, true, true], [true, false, true], [false; 3], [true, true, false]]
    );
    let ctx = &found[1];
    assert_eq!(ctx.client, Some(station_cert.clone()), "every column of the certificate, status included");
    assert_eq!(ctx.station, Some(st.clone()));
    assert_eq!(ctx.device, Some(device("d-1", "b")));
    assert!(s.enrollment_contexts(&[]).await.unwrap().is_empty());
}

async fn compromised_keys_are_refused_when_stored(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut first = cert("device", &[1], None);
    first.public_key_sha256 = "ab".repeat(32);
    s.store_certificates(&[issue(first)]).await.unwrap();
    // Revoked for another reason, the key may be certified again.
    s.revoke_certificate("device", &[1], Reason::Superseded, 1_700_000_000, event("certificate.revoke", "c/1"))
        .await
        .unwrap();
    let mut again = cert("device", &[2], None);
    again.public_key_sha256 = "ab".repeat(32);
    assert_eq!(s.store_certificates(&[issue(again)]).await.unwrap(), vec![IssuanceOutcome::Stored]);
    s.revoke_certificate("device", &[2], Reason::KeyCompromise, 1_700_000_000, event("certificate.revoke", "c/2"))
        .await
        .unwrap();

    let before = s.audit_entries(0, 1000).await.unwrap().len();
    let mut same_key = cert("device", &[3], None);
    same_key.public_key_sha256 = "ab".repeat(32);
    let out = s.store_certificates(&[issue(same_key), issue(cert("device", &[4], None))]).await.unwrap();
    assert_eq!(out, vec![IssuanceOutcome::KeyCompromised, IssuanceOutcome::Stored]);
    assert!(s.get_certificate("device", &[3]).await.unwrap().is_none(), "nothing stored for the compromised key");
    assert_eq!(s.audit_entries(0, 1000).await.unwrap().len(), before + 1, "audited: only the stored one");
}

async fn api_tokens_add_get_revoke_list(h: &Harness) {
    let s = h.store();
    let token = |id: &str, role: Role, created_at: i64| ApiToken {
        id: id.into(),
        name: format!("name-{id}"),
        role,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at,
        revoked_at: None,
    };
    let a = token("00112233445566aa", Role::Operator, 10);
    let b = token("00112233445566bb", Role::ProvisioningStation, 20);
    s.add_api_token(&a, event("token.create", "token:a")).await.unwrap();
    s.add_api_token(&b, event("token.create", "token:b")).await.unwrap();
    let err = s.add_api_token(&a, event("token.create", "token:a")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.get_api_token(&a.id).await.unwrap(), Some(a.clone()));
    assert!(s.get_api_token("ffffffffffffffff").await.unwrap().is_none());
    assert_eq!(s.list_api_tokens().await.unwrap(), vec![a.clone(), b.clone()]);

    s.revoke_api_token(&a.id, 99, event("token.revoke", "token:a")).await.unwrap();
    let revoked = s.get_api_token(&a.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(99));
    let err = s.revoke_api_token(&a.id, 100, event("token.revoke", "token:a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s.revoke_api_token("ffffffffffffffff", 100, event("token.revoke", "token:x")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Audited once per successful write: two adds and one revocation.
    let entries = s.audit_entries(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["token.create", "token.create", "token.revoke"]);
    verify_log(s, 10).await.unwrap();
}

async fn latest_valid_certificate_of_a_profile(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mk = |serial: u8, not_after: i64, status: CertStatus| {
        let mut c = cert("device", &[serial], None);
        c.profile = "ocsp-signer-device".into();
        c.not_after = not_after;
        c.status = status;
        issue(c)
    };
    assert!(s.latest_valid_certificate("device", "ocsp-signer-device").await.unwrap().is_none());
    let batch = [mk(1, 1_000, CertStatus::Valid), mk(2, 3_000, CertStatus::Valid), mk(3, 9_000, CertStatus::Revoked)];
    s.store_certificates(&batch).await.unwrap();
    let latest = s.latest_valid_certificate("device", "ocsp-signer-device").await.unwrap().unwrap();
    assert_eq!(latest.serial, vec![2], "newest valid, not the revoked one");
    assert!(s.latest_valid_certificate("device", "device").await.unwrap().is_none());
}

async fn certificate_keys_page_in_id_order(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let batch: Vec<Issuance> = (1..=5u8).map(|i| issue(cert("device", &[i], None))).collect();
    s.store_certificates(&batch).await.unwrap();
    let first = s.certificate_keys(0, 3).await.unwrap();
    let rest = s.certificate_keys(first[2].id, 3).await.unwrap();
    let serials: Vec<Vec<u8>> = first.iter().chain(&rest).map(|k| k.serial.clone()).collect();
    assert_eq!(serials, (1..=5u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(first.iter().chain(&rest).all(|k| k.issuer == "device"));
    assert!(s.certificate_keys(rest[1].id, 3).await.unwrap().is_empty());
}

async fn certificate_round_trip(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let plain = cert("device", &[0x01, 0x02, 0xab], Some("d-1"));
    let mut revoked = cert("device", &[0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70], None);
    revoked.status = CertStatus::Revoked;
    revoked.revoked_at = Some(1_750_000_000);
    revoked.revocation_reason = Some(Reason::KeyCompromise);
    revoked.subject = "CN=station-7,O=Example Factory,C=DE".into();
    revoked.profile = "station".into();
    let mut superseded = cert("device", &[0x7f; 20], Some("d-1"));
    superseded.status = CertStatus::Superseded;
    superseded.not_before = -5;
    superseded.not_after = i64::MAX;
    superseded.der = (0..=255u8).cycle().take(1500).collect();

    let outcomes =
        s.store_certificates(&[issue(plain.clone()), issue(revoked.clone()), issue(superseded.clone())]).await.unwrap();
    assert_eq!(outcomes, vec![IssuanceOutcome::Stored; 3]);
    for c in [&plain, &revoked, &superseded] {
        assert_eq!(s.get_certificate("device", &c.serial).await.unwrap().as_ref(), Some(c));
        assert_eq!(s.certificate_by_fingerprint(&c.fingerprint).await.unwrap().as_ref(), Some(c));
    }
    assert_eq!(s.get_certificate("station", &plain.serial).await.unwrap(), None);
    assert_eq!(s.get_certificate("device", &[0x01, 0x02]).await.unwrap(), None);
}

async fn serial_taken_in_later_batch(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let first = s.store_certificates(&[issue(cert("device", &[1], None)), issue(cert("device", &[2], None))]).await;
    assert_eq!(first.unwrap(), vec![IssuanceOutcome::Stored; 2]);

    let mut clash = cert("device", &[2], Some("other"));
    clash.der = b"different".to_vec();
    let batch = [issue(cert("device", &[3], None)), issue(clash), issue(cert("device", &[4], None))];
    let outcomes = s.store_certificates(&batch).await.unwrap();
    assert_eq!(outcomes, [IssuanceOutcome::Stored, IssuanceOutcome::SerialTaken, IssuanceOutcome::Stored]);
    // The original keeps its data; the others were stored.
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap(), Some(cert("device", &[2], None)));
    for serial in [[3u8], [4]] {
        assert!(s.get_certificate("device", &serial).await.unwrap().is_some());
    }
    // Audit: ca.init + 2 + 2, no entry for the skipped item.
    let entries = s.audit_entries(0, 100).await.unwrap();
    let targets: Vec<&str> = entries.iter().map(|e| e.event.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "ca:device",
            "certificate:device/01",
            "certificate:device/02",
            "certificate:device/03",
            "certificate:device/04"
        ]
    );
    assert!(verify_log(s, 100).await.is_ok());
}

async fn serial_taken_within_batch(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut dup = cert("device", &[0x10], Some("second"));
    dup.der = b"second".to_vec();
    let batch = [
        issue(cert("device", &[0x10], Some("first"))),
        issue(cert("device", &[0x11], None)),
        issue(dup),
        issue(cert("device", &[0x12], None)),
    ];
    let outcomes = s.store_certificates(&batch).await.unwrap();
    use IssuanceOutcome::{SerialTaken, Stored};
    assert_eq!(outcomes, [Stored, Stored, SerialTaken, Stored]);
    let got = s.get_certificate("device", &[0x10]).await.unwrap().unwrap();
    assert_eq!(got.device_id.as_deref(), Some("first"));
    let entries = s.audit_entries(0, 100).await.unwrap();
    assert_eq!(events_of(&entries[1..]), [&batch[0], &batch[1], &batch[3]].map(|i| i.audit.clone()));
    assert_eq!(verify_log(s, 2).await.map(|h| h.0), Ok(4));
}

async fn same_serial_other_issuer(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let a = cert("device", &[0x42], Some("d-1"));
    let b = cert("station", &[0x42], None);
    let outcomes = s.store_certificates(&[issue(a.clone()), issue(b.clone())]).await.unwrap();
    assert_eq!(outcomes, vec![IssuanceOutcome::Stored; 2]);
    assert_eq!(s.get_certificate("device", &[0x42]).await.unwrap(), Some(a));
    assert_eq!(s.get_certificate("station", &[0x42]).await.unwrap(), Some(b));
}

async fn failed_batch_stores_nothing(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    // The issuer must be a known CA: one bad item fails the whole batch atomically.
    let batch = [issue(cert("device", &[1], None)), issue(cert("no-such-ca", &[2], None))];
    let err = s.store_certificates(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(s.get_certificate("device", &[1]).await.unwrap(), None);
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
    // The store is still usable (no pooled connection was left inside the failed
    // transaction) and the chain intact.
    for _ in 0..4 {
        assert_eq!(s.get_certificate("device", &[1]).await.unwrap(), None);
    }
    assert_eq!(s.store_certificates(&batch[..1]).await.unwrap(), [IssuanceOutcome::Stored]);
    assert_eq!(verify_log(s, 100).await.map(|h| h.0), Ok(2));
}

async fn certificates_for_device_newest_first(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.store_certificates(&[issue(cert("device", &[1], Some("d-1"))), issue(cert("device", &[2], Some("d-2")))])
        .await
        .unwrap();
    let mut renewed = cert("device", &[3], Some("d-1"));
    renewed.not_before += 100;
    s.store_certificates(&[issue(renewed), issue(cert("device", &[4], None))]).await.unwrap();
    s.store_certificates(&[issue(cert("device", &[5], Some("d-1"))), issue(cert("device", &[6], Some("d-1")))])
        .await
        .unwrap();

    let serials: Vec<Vec<u8>> = s.certificates_for_device("d-1").await.unwrap().into_iter().map(|c| c.serial).collect();
    assert_eq!(serials, [vec![6], vec![5], vec![3], vec![1]]);
    assert_eq!(s.certificates_for_device("d-2").await.unwrap().len(), 1);
    assert!(s.certificates_for_device("d-3").await.unwrap().is_empty());
}

async fn devices_add_get(h: &Harness) {
    let s = h.store();
    let mut d2 = device("d-2", "b-1");
    d2.hardware_serial = None;
    d2.state = DeviceState::Active;
    let devices = [device("d-1", "b-1"), d2.clone(), device("d-3", "b-2")];
    s.add_devices(&devices, event("device.register", "batch:b-1")).await.unwrap();
    for d in &devices {
        assert_eq!(s.get_device(&d.device_id).await.unwrap().as_ref(), Some(d));
    }
    assert_eq!(s.get_device("d-4").await.unwrap(), None);
    // One audit entry for the whole registration; an empty one is a no-op.
    s.add_devices(&[], event("device.register", "batch:empty")).await.unwrap();
    assert_eq!(events_of(&s.audit_entries(0, 100).await.unwrap()), [event("device.register", "batch:b-1")]);
}

async fn devices_duplicate_stores_nothing(h: &Harness) {
    let s = h.store();
    s.add_devices(&[device("d-1", "b-1")], event("device.register", "batch:b-1")).await.unwrap();

    // Clashes with a stored device.
    let batch = [device("d-2", "b-2"), device("d-1", "b-2"), device("d-3", "b-2")];
    let err = s.add_devices(&batch, event("device.register", "batch:b-2")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("'d-1'")), "{err:?}");

    // Repeats an id within the batch.
    let batch = [device("d-4", "b-3"), device("d-5", "b-3"), device("d-4", "b-3")];
    let err = s.add_devices(&batch, event("device.register", "batch:b-3")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("'d-4'")), "{err:?}");

    for id in ["d-2", "d-3", "d-4", "d-5"] {
        assert_eq!(s.get_device(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(s.get_device("d-1").await.unwrap(), Some(device("d-1", "b-1")));
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
}

async fn audit_records_every_write_in_order(h: &Harness) {
    let s = h.store();
    let mut expected = Vec::new();

    let e = event("ca.init", "ca:device");
    s.create_ca(&ca("device", None), e.clone()).await.unwrap();
    expected.push(e);
    let e = event("ca.renew", "ca:device").with_details(serde_json::json!({ "reason": "external signing" }));
    s.update_ca_certificate("device", b"new", None, e.clone()).await.unwrap();
    expected.push(e);
    let batch: Vec<Issuance> = (1..=3u8).map(|i| issue(cert("device", &[i], Some("d-1")))).collect();
    s.store_certificates(&batch).await.unwrap();
    expected.extend(batch.iter().map(|i| i.audit.clone()));
    let e = event("device.register", "batch:b-1");
    s.add_devices(&[device("d-1", "b-1"), device("d-2", "b-1")], e.clone()).await.unwrap();
    expected.push(e);
    let refusals = [
        AuditEvent::success("station:ab12", "certificate.enroll", "device:d-9").with_outcome("denied: not registered"),
        AuditEvent::success("cli:bob", "audit.read", "audit").with_outcome("failed: bad page"),
    ];
    s.append_audit(&refusals).await.unwrap();
    expected.extend(refusals.iter().cloned());
    // Refused writes add nothing.
    assert!(s.create_ca(&ca("device", None), event("ca.init", "ca:device")).await.is_err());
    assert!(s.update_ca_certificate("x", b"", None, event("ca.renew", "ca:x")).await.is_err());
    assert!(s.add_devices(&[device("d-1", "b")], event("device.register", "batch:b")).await.is_err());
    assert_eq!(s.store_certificates(&batch[..1]).await.unwrap(), [IssuanceOutcome::SerialTaken]);

    let entries = all_entries(s, 3).await;
    assert_eq!(events_of(&entries), expected);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<i64>>());
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    assert!(entries.windows(2).all(|w| w[1].prev_hash == w[0].hash && w[1].time_us >= w[0].time_us));
    assert_eq!(verify_log(s, 3).await, Ok((8, entries[7].hash)));
    assert_eq!(verify_log(s, 1).await, Ok((8, entries[7].hash)));
    // Paging from the middle.
    let tail = s.audit_entries(5, 2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    assert!(s.audit_entries(8, 10).await.unwrap().is_empty());
    assert!(s.audit_entries(0, 0).await.unwrap().is_empty());
}

/// Five entries: ca.init, three issuances, one refusal.
async fn write_five(s: &dyn Store) {
    create_ca(s, "device").await;
    let batch: Vec<Issuance> = (1..=3u8).map(|i| issue(cert("device", &[i], None))).collect();
    s.store_certificates(&batch).await.unwrap();
    s.append_audit(&[event("certificate.enroll", "device:x").with_outcome("denied: unknown")]).await.unwrap();
    assert_eq!(verify_log(s, 2).await.map(|h| h.0), Ok(5));
}

async fn tamper_edit_detected(h: &Harness) {
    let s = h.store();
    write_five(s).await;
    h.backend.exec_sql("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2").await;
    for page in [1, 2, 100] {
        let err = verify_log(s, page).await.unwrap_err();
        assert_eq!(err.seq, 2, "{err}");
        assert!(err.reason.contains("edited"), "{err}");
    }
    // A forged hash for the edited row moves the break to the next entry.
    let forged = {
        let entries = s.audit_entries(1, 1).await.unwrap();
        let e = &entries[0];
        hex::encode(audit::entry_hash(&e.prev_hash, e.seq, e.time_us, &e.event))
    };
    h.backend.exec_sql(&format!("UPDATE audit_log SET hash = '{forged}' WHERE seq = 2")).await;
    assert_eq!(verify_log(s, 100).await.unwrap_err().seq, 3);
}

async fn tamper_delete_detected(h: &Harness) {
    let s = h.store();
    write_five(s).await;
    h.backend.exec_sql("DELETE FROM audit_log WHERE seq = 3").await;
    for page in [1, 2, 100] {
        let err = verify_log(s, page).await.unwrap_err();
        assert_eq!(err.seq, 3, "{err}");
        assert!(err.reason.contains("missing"), "{err}");
    }
    // Deleting the newest entries is not visible in the chain alone, but a gap is:
    // deleting the first one breaks at 1.
    h.backend.exec_sql("DELETE FROM audit_log WHERE seq = 1").await;
    assert_eq!(verify_log(s, 100).await.unwrap_err().seq, 1);
}

/// 8 tasks × 50 certificates, in batches of 1–5, all at once.
async fn concurrent_store_certificates(h: &Harness) {
    create_ca(h.store(), "device").await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8u8 {
        let store = Arc::clone(&h.store);
        tasks.spawn(async move {
            let certs: Vec<Issuance> = (0..50u8).map(|i| issue(cert("device", &[t, i, 0xc0], None))).collect();
            for chunk in certs.chunks(usize::from(t % 5) + 1) {
                let outcomes = store.store_certificates(chunk).await.unwrap();
                assert!(outcomes.iter().all(|o| *o == IssuanceOutcome::Stored));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let s = h.store();
    for t in 0..8u8 {
        for i in 0..50u8 {
            assert!(s.get_certificate("device", &[t, i, 0xc0]).await.unwrap().is_some());
        }
    }
    let entries = all_entries(s, 64).await;
    assert_eq!(entries.len(), 401);
    assert!(entries.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1));
    assert_eq!(verify_log(s, 64).await.map(|h| h.0), Ok(401));
}

/// Two store instances on one database write at once and keep a single valid chain
/// (DESIGN invariant 6; on SQLite, two opens of one file).
async fn two_instances_one_chain(h: &Harness) {
    let a = Arc::clone(&h.store);
    let b = h.backend.second_instance().await;
    create_ca(&*a, "device").await;
    assert!(b.get_ca("device").await.unwrap().is_some());

    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.spawn(async move {
            for i in 0..25u8 {
                let n = u8::try_from(n).unwrap();
                if i % 5 == 0 {
                    store.append_audit(&[event("audit.read", &format!("audit:{n}/{i}"))]).await.unwrap();
                }
                let batch = [issue(cert("device", &[n, i, 1], None)), issue(cert("device", &[n, i, 2], None))];
                store.store_certificates(&batch).await.unwrap();
            }
        });
    }
    // Both instances race for the same serials too: exactly one wins each.
    for store in [a.clone(), b.clone()] {
        tasks.spawn(async move {
            for i in 0..20u8 {
                store.store_certificates(&[issue(cert("device", &[0xee, i], None))]).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let entries = all_entries(&*b, 50).await;
    // 1 ca.init + 4 × (5 reads + 50 certs) + 20 contested serials.
    assert_eq!(entries.len(), 1 + 4 * 55 + 20);
    assert_eq!(verify_log(&*a, 50).await.map(|h| h.0), Ok(241));
    assert_eq!(verify_log(&*b, 7).await.map(|h| h.0), Ok(241));
}

/// Not a pass/fail test: prints certificates/s for 16 concurrent callers storing
/// batches of 128 (as the upstream batching writer would), plus single-caller numbers.
async fn throughput(h: &Harness) {
    create_ca(h.store(), "device").await;
    for (callers, batch, batches) in [(1usize, 128usize, 20usize), (4, 128, 10), (16, 64, 5), (16, 256, 2)] {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..callers {
            let store = Arc::clone(&h.store);
            tasks.spawn(async move {
                for b in 0..batches {
                    let items: Vec<Issuance> = (0..batch)
                        .map(|i| {
                            let serial: [u8; 16] = rand::random();
                            let mut c = cert("device", &serial, Some(&format!("dev-{caller}-{b}-{i}")));
                            c.der = (0..700).map(|_| rand::random::<u8>()).collect();
                            issue(c)
                        })
                        .collect();
                    store.store_certificates(&items).await.unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let n = callers * batch * batches;
        let secs = start.elapsed().as_secs_f64();
        println!("{callers:>2} callers × batches of {batch:>3}: {n} certs in {secs:.2}s = {:.0}/s", n as f64 / secs);
    }
    assert!(verify_log(h.store(), 1000).await.is_ok());
}

// ---------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn postgres_unreachable_is_unavailable_fast() {
    let start = Instant::now();
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/pki?sslmode=disable").await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("127.0.0.1:1")), "{err:?}");
    // Bad connection strings are reported without echoing them.
    let err = PostgresStore::connect("postgres://user:secret@host:notaport/db").await.unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn postgres_migrations_are_idempotent_across_instances() {
    let db = TestDatabase::create().await;
    let stores = tokio::join!(
        PostgresStore::connect_with_config(db.config.clone()),
        PostgresStore::connect_with_config(db.config.clone()),
        PostgresStore::connect_with_config(db.config.clone()),
    );
    for s in [stores.0, stores.1, stores.2] {
        s.unwrap().ping().await.unwrap();
    }
}

#[tokio::test]
async fn sqlite_reopen_keeps_data_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pki.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        create_ca(&s, "device").await;
        s.store_certificates(&[issue(cert("device", &[9], None))]).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.get_certificate("device", &[9]).await.unwrap().is_some());
    assert_eq!(verify_log(&s, 10).await.map(|h| h.0), Ok(2));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_unopenable_path_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path().join("missing/dir/pki.db")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
