//! Opening and reaching the stores: readiness, and what only one dialect has
//! (PostgreSQL connection failures and concurrent migrations, SQLite files).

use super::*;

pub(super) async fn ping_and_empty_reads(h: &Harness) {
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
    assert_eq!(verify_log(s, 10).await, Ok((0, tlog::EMPTY_ROOT)));
}

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
