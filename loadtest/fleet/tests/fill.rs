//! A small fill on PostgreSQL (`DATABASE_URL`, default the local server): the keys and
//! indexes afterwards are the migrations' own, the rows are what the service would
//! read back, and every audit entry matches the leaf hash the service computes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ca_service::config::{Config, KeyStoreConfig};
use ca_service::store::CertStatus;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

#[tokio::test(flavor = "multi_thread")]
async fn fill_keeps_the_schema_and_writes_what_the_service_reads() {
    let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let admin = fleet_load::connect(&admin_url).await.expect("PostgreSQL (set DATABASE_URL)");
    let name = format!("fleet_test_{:08x}", rand::random::<u32>());
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    let url = admin_url.replace("/postgres?", &format!("/{name}?"));
    let result = tokio::spawn(check(url)).await;
    admin.batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await.unwrap();
    result.unwrap();
}

async fn check(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, [7u8; 32]).unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    config.storage.url = url.clone();
    config.crl.shards = 4;
    config.key_stores.insert(
        "default".into(),
        KeyStoreConfig::Software {
            dir: dir.path().join("keys"),
            passphrase_env: None,
            passphrase_file: None,
            key_file: Some(kek),
        },
    );
    let config = Arc::new(config);
    let store = ca_service::store::open(&url).await.unwrap();
    let keys = Arc::new(ca_service::keys::KeyStores::new(&config));
    ca_service::hierarchy::init(config.clone(), store.clone(), keys, "test").await.unwrap();

    let db = fleet_load::connect(&url).await.unwrap();
    let indexes = fleet_load::schema::list_indexes(&db, false).await.unwrap();
    let constraints = fleet_load::schema::list_constraints(&db).await.unwrap();
    assert!(indexes.iter().any(|(n, _)| n == "certificates_crl"), "{indexes:?}");
    let head: i64 = db.query_one("SELECT coalesce(max(seq), 0) FROM audit_log", &[]).await.unwrap().get(0);

    let mut spec = fleet_load::FleetSpec::new(1234, config.clone());
    (spec.revoked, spec.batch_size) = (Some(100), 500);
    let report = fleet_load::fill(&url, &spec).await.unwrap();
    assert_eq!(report.devices.rows, 1234);
    assert_eq!(report.revoked, 100);
    assert_eq!(report.audit.rows, 1234);

    assert_eq!(
        fleet_load::schema::list_indexes(&db, false).await.unwrap(),
        indexes,
        "indexes as the migrations made them"
    );
    assert_eq!(
        fleet_load::schema::list_constraints(&db).await.unwrap(),
        constraints,
        "keys as the migrations made them"
    );

    // The service reads the rows back, and they agree with their own DER.
    let urls = ca_service::profile::PublicUrls::new(&config);
    let mut superseded = 0;
    for id in ["SN-00000002", "SN-00000003", "SN-00001234"] {
        let device = store.get_device(id).await.unwrap().unwrap();
        assert_eq!(device.batch, if id == "SN-00001234" { "batch-0003" } else { "batch-0001" });
        let certs = store.certificates_for_device(id).await.unwrap();
        assert!(!certs.is_empty(), "{id}");
        for c in certs {
            superseded += usize::from(c.status == CertStatus::Superseded);
            assert_eq!(c.crl_shard, urls.shard_for(&c.serial));
            let (_, x509) = x509_parser::parse_x509_certificate(&c.der).unwrap();
            assert_eq!(x509.raw_serial(), c.serial.as_slice());
            assert_eq!(x509.validity().not_after.timestamp(), c.not_after);
            assert_eq!(c.fingerprint, ca_service::issuance::sha256_hex(&c.der));
        }
    }
    assert_eq!(superseded, 1, "SN-00000002 was renewed");
    let revoked = store.revoked_for_crl("device", 0, None, None).await.unwrap();
    assert_eq!(revoked.len(), 100);

    // The COPY moved the tallies the counts read (migration V18's triggers), as a
    // count of the rows says.
    let mut by_status = std::collections::BTreeMap::new();
    for c in store.certificate_counts(0).await.unwrap() {
        *by_status.entry(c.state.as_str().to_string()).or_insert(0i64) += c.count as i64;
    }
    let rows = db.query("SELECT status, count(*) FROM certificates GROUP BY status", &[]).await.unwrap();
    let counted: std::collections::BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(by_status, counted, "certificates by status");
    let devices: u64 = store.device_counts().await.unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(devices, 1234);

    // Every entry after the hierarchy's is consecutive and has the service's leaf hash.
    let entries = store.audit_entries(head, 5000).await.unwrap();
    assert_eq!(entries.len(), 1234);
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, head + 1 + n as i64);
        assert_eq!(e.leaf_hash, Some(e.computed_leaf_hash()), "entry {}", e.seq);
    }
    assert!(entries.iter().any(|e| e.event.action == "device.register" && e.event.target == "batch:batch-0002"));
}
