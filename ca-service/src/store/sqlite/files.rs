//! The SQLite database's files: created private (directory `0700`, database `0600`;
//! SQLite gives its `-wal` and `-shm` files the database's mode), checked for
//! corruption, and locked against a second `serve`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::store::StoreError;

/// Creates a directory for the database (`0700`, with any missing parents) if it does
/// not exist, whatever the umask.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))
}

/// Creates the empty database file (`0600`) if it does not exist, whatever the umask
/// (its directory must exist). An existing database open to group or others is left
/// as the operator made it, with a warning.
pub(super) fn prepare(path: &Path) -> Result<(), StoreError> {
    let unavailable = |what: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot open SQLite database {}: {e}", what.display()))
    };
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path).map_err(|e| unavailable(path, e))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:04o}"),
                    "the SQLite database is accessible to group/others; 0600 is recommended"
                );
            }
        }
        Err(e) => return Err(unavailable(path, e)),
    }
    Ok(())
}

/// Whether an error means the file is not (or no longer) a sound SQLite database.
pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(err, _) if matches!(err.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

pub(super) fn corrupt(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "the SQLite database {} is damaged ({detail}); restore it from a backup (see README, Storage)",
        path.display()
    ))
}

/// `PRAGMA quick_check` at start: every page, b-tree and record format of the file
/// (not index contents). Linear in the database size; see the README for its cost.
pub(super) fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(|e| check_err(path, e))?;
    let rows: Vec<String> =
        stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| check_err(path, e))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(corrupt(path, format!("quick_check: {}", rows.join("; "))))
}

fn check_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if is_corruption(&e) {
        corrupt(path, e)
    } else {
        StoreError::Database(format!("checking {}: {e}", path.display()))
    }
}

/// The readiness check: a fresh read-only connection (so that nothing comes from a
/// connection's page cache) reads the header and schema and the first and the last
/// row of every table — the root-to-leaf paths that every lookup and every append
/// walk. Cheap at any size (a few page reads per table); a damaged header, schema or
/// table root is caught at once, damage deep inside a table at the next start's
/// `quick_check`.
pub(super) fn probe(path: &Path) -> Result<(), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open SQLite database {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(|e| probe_err(path, e))?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map_err(|e| probe_err(path, e))?;
    let tables: Vec<String> =
        stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| probe_err(path, e))?;
    drop(stmt);
    if tables.is_empty() {
        return Err(corrupt(path, "it has no tables"));
    }
    for t in tables {
        let t = t.replace('"', "\"\"");
        for order in ["ASC", "DESC"] {
            conn.query_row(
                &format!("SELECT count(*) FROM (SELECT 1 FROM \"{t}\" ORDER BY rowid {order} LIMIT 1)"),
                [],
                |_| Ok(()),
            )
            .map_err(|e| probe_err(path, e))?;
        }
    }
    Ok(())
}

fn probe_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if is_corruption(&e) {
        corrupt(path, e)
    } else {
        StoreError::Unavailable(format!("SQLite database {}: {e}", path.display()))
    }
}

/// An exclusive lock on `<database>.lock`, held while the value lives: one `serve` per
/// SQLite database. Two servers on one file would each run the scheduled jobs (CRL
/// numbers, OCSP refresh) that PostgreSQL serializes with advisory locks. The lock is
/// `flock(2)`, released by the kernel when the process ends however it ends. Other
/// commands do not take it: they are short, and SQLite's own locking serializes their
/// writes with the server's.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    path: PathBuf,
}

impl ServeLock {
    /// Takes the lock for the database at `db`, or says who holds it.
    pub fn acquire(db: &Path) -> Result<Self, StoreError> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        let io = |e: std::io::Error| StoreError::Unavailable(format!("lock file {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let by = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
                return Err(StoreError::Unavailable(format!(
                    "another `ca-service serve` is already running on the SQLite database {}{by}: only one \
                     server may use an SQLite database (its lock file {} is held); stop it first, or use \
                     PostgreSQL for several instances",
                    db.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the next one's message.
        file.set_len(0).and_then(|_| file.rewind()).map_err(io)?;
        write!(file, "{}", std::process::id()).and_then(|_| file.flush()).map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn database_files_and_directory_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("pki.db");
        create_private_dir(db.parent().unwrap()).unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&db).unwrap();
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("data").join("pki.db-wal");
        let shm = dir.path().join("data").join("pki.db-shm");
        assert!(wal.exists() && shm.exists());
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&shm), 0o600);
        let lock = ServeLock::acquire(&db).unwrap();
        assert_eq!(mode(lock.path()), 0o600);
        drop(store);
    }

    /// The cost of the start check and of the readiness probe at 100,000 certificates
    /// (each with its audit entry), for the README.
    #[test]
    #[ignore = "timing: cargo test -p ca-service --release --lib -- --ignored --nocapture check_cost"]
    fn check_cost_at_100k_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pki.db");
        drop(crate::store::sqlite::SqliteStore::open(&db).unwrap());
        let mut conn = Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO cas (name, cert_der, key_store, key_label, parent, created_at, updated_at) \
             VALUES ('device', x'00', 'default', 'k', NULL, 0, 0)",
            [],
        )
        .unwrap();
        {
            let mut cert = tx
                .prepare(
                    "INSERT INTO certificates (issuer, serial_hex, subject, device_id, profile, not_before, not_after, \
                     status, fingerprint, public_key_sha256, der, created_at) \
                     VALUES ('device', ?1, 'CN=SN', ?2, 'device', 0, 1, 'valid', ?3, ?4, randomblob(650), 0)",
                )
                .unwrap();
            let mut audit = tx
                .prepare(
                    "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, prev_hash, hash) \
                     VALUES (?1, 0, 'est:station', 'certificate.issue', ?2, 'success', '{\"profile\":\"device\"}', ?3, ?4)",
                )
                .unwrap();
            for i in 1..=100_000u64 {
                let (serial, fp) = (format!("{i:032x}"), format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                cert.execute(rusqlite::params![serial, format!("SN-{i}"), fp, format!("{fp}00")[2..].to_string()])
                    .unwrap();
                audit.execute(rusqlite::params![i, serial, format!("{:064x}", i - 1), format!("{i:064x}")]).unwrap();
            }
        }
        tx.commit().unwrap();
        drop(conn);
        let size = std::fs::metadata(&db).unwrap().len();
        let conn = Connection::open(&db).unwrap();
        let t = std::time::Instant::now();
        quick_check(&conn, &db).unwrap();
        let check = t.elapsed();
        let t = std::time::Instant::now();
        for _ in 0..100 {
            probe(&db).unwrap();
        }
        let probe = t.elapsed() / 100;
        println!("{} MiB: quick_check {check:?}, readiness probe {probe:?}", size >> 20);
    }

    #[test]
    fn a_damaged_database_is_refused_at_open_and_by_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pki.db");
        drop(crate::store::sqlite::SqliteStore::open(&db).unwrap());
        probe(&db).unwrap();
        let len = std::fs::metadata(&db).unwrap().len() as usize;
        let mut bytes = std::fs::read(&db).unwrap();
        // Garbage over everything behind the header page.
        for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
            *b = (i.wrapping_mul(31) ^ 0xa5) as u8;
        }
        assert!(len > 8192);
        std::fs::write(&db, &bytes).unwrap();
        let err = crate::store::sqlite::SqliteStore::open(&db).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("damaged"), "{err}");
        assert!(probe(&db).unwrap_err().to_string().contains("damaged"));
        // Not a database at all.
        std::fs::write(&db, vec![0x5au8; 64 * 1024]).unwrap();
        let err = crate::store::sqlite::SqliteStore::open(&db).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("damaged"), "{err}");
        assert!(probe(&db).unwrap_err().to_string().contains("damaged"));
    }

    #[test]
    fn a_second_lock_on_one_database_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pki.db");
        let first = ServeLock::acquire(&db).unwrap();
        let err = ServeLock::acquire(&db).unwrap_err().to_string();
        assert!(err.contains("already running") && err.contains(&std::process::id().to_string()), "{err}");
        // Another database in the same directory is another lock.
        drop(ServeLock::acquire(&dir.path().join("other.db")).unwrap());
        drop(first);
        ServeLock::acquire(&db).unwrap();
    }
}
