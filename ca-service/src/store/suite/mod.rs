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
use crate::audit::{AuditEntry, AuditEvent, LogBreak, LogHead};

// One file per aggregate, as the stores are split; each test runs on both stores
// through `both_backends!` below, under its old name (`store::suite::sqlite::…`).
mod audit;
mod cas;
mod certificates;
mod connections;
mod crls;
mod registry;
mod reports;
mod revocation;
mod rotations;
mod tokens;
mod updates;

use self::{
    audit::*, cas::*, certificates::*, connections::*, crls::*, registry::*, reports::*, revocation::*, rotations::*,
    tokens::*, updates::*,
};

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
pub(super) struct TestDatabase {
    admin: tokio_postgres::Config,
    name: String,
    pub(super) config: tokio_postgres::Config,
}

impl TestDatabase {
    pub(super) async fn create() -> Self {
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
    ca_generations_keep_their_rollover_fields_and_are_destroyed_once,
    hierarchy_is_stored_whole_or_not_at_all,
    enrollment_effects_are_atomic_with_the_certificate,
    stations_add_get_list,
    enrollment_contexts_read_what_each_key_names,
    compromised_keys_are_refused_when_stored,
    api_tokens_add_get_revoke_list,
    latest_valid_certificate_of_a_profile,
    enrollment_requests_wait_for_one_final_decision,
    deliveries_are_found_by_request_and_station,
    update_requests_need_two_distinct_approvers,
    update_requests_expired_or_rejected_are_never_signed,
    revocation_is_audited_once_and_feeds_the_crl,
    revoking_a_device_revokes_all_its_certificates,
    revoking_a_batch_or_a_model_revokes_exactly_its_devices,
    an_unknown_reason_code_is_corrupt,
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
    tree_nodes_and_checkpoints,
    concurrent_store_certificates,
    two_instances_one_chain,
    certificates_are_counted_by_state,
    counts_follow_every_write_and_the_day_boundary,
    connection_pool_is_reported,
    expiring_certificates_are_paged_filtered_and_grouped,
    stale_identities_and_devices_never_enrolled,
    devices_are_found_by_batch_model_and_state,
    revocation_preview_counts_what_revoking_would_revoke,
    audit_is_found_by_actor_action_and_target,
    rotations_count_progress_and_revoke_the_pending_once,
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
        ..CaRecord::default()
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

/// Verifies the whole log page by page, as `ca-service audit verify` would: the last
/// seq and the tree's root.
async fn verify_log(s: &dyn Store, page: i64) -> Result<(i64, tlog::Hash), LogBreak> {
    let mut head = LogHead::default();
    loop {
        let entries = s.audit_entries(head.seq, page).await.unwrap();
        if entries.is_empty() {
            return Ok((head.seq, head.root()));
        }
        head = crate::audit::verify(head, &entries)?;
    }
}

fn events_of(entries: &[AuditEntry]) -> Vec<AuditEvent> {
    entries.iter().map(|e| e.event.clone()).collect()
}
