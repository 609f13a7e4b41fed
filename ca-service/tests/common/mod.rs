//! Shared by ca-service's integration tests and benches: a throw-away PostgreSQL
//! database per use, and configurations for a hierarchy in a temp dir.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use ca_service::config::{Config, KeyStoreConfig};
use ca_service::issuance::Pki;
use ca_service::keys::KeyStores;
use ca_service::store::{self, Store};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// A uniquely named database on the server of `DATABASE_URL` (default: local
/// PostgreSQL), dropped when this goes out of scope.
pub struct TempDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TempDb {
    pub async fn create() -> Self {
        let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let name = format!("ca_test_{}_{}", std::process::id(), hex::encode(rand::random::<[u8; 6]>()));
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for these tests: {e}"));
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let url = with_dbname(&admin, &name);
        Self { name, url, admin }
    }
}

/// Replaces the database name in a postgres:// URL.
fn with_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.ok()
            })
        })
        .join();
    }
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A configuration whose data (SQLite file, software keys unlocked by a random key
/// file) lives in `dir`.
pub fn config_in(dir: &Path) -> Config {
    let key_file = dir.join("kek");
    if !key_file.exists() {
        std::fs::write(&key_file, hex::encode(rand::random::<[u8; 32]>())).unwrap();
        // Secret files must be the owner's only.
        std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mut c = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    c.storage.url = format!("sqlite:{}", dir.join("pki.db").display());
    c.key_stores.insert(
        "default".into(),
        KeyStoreConfig::Software {
            dir: dir.join("keys"),
            passphrase_env: None,
            passphrase_file: None,
            key_file: Some(key_file),
        },
    );
    c
}

/// Everything a test needs; keeps the temp dir and database alive.
pub struct Env {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyStores>,
    pub dir: tempfile::TempDir,
    pub db: Option<TempDb>,
}

impl Env {
    pub async fn new(backend: Backend) -> Self {
        Self::with_config(backend, |_| {}).await
    }

    pub async fn with_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = TempDb::create().await;
                config.storage.url = db.url.clone();
                Some(db)
            }
        };
        tweak(&mut config);
        config.validate().unwrap();
        let store = store::open(&config.storage.url).await.unwrap();
        let keys = Arc::new(KeyStores::new(&config));
        Self { config: Arc::new(config), store, keys, dir, db }
    }

    pub async fn init(&self) {
        ca_service::hierarchy::init(self.config.clone(), self.store.clone(), self.keys.clone(), "test").await.unwrap();
    }

    pub async fn pki(&self) -> Pki {
        Pki::load(self.config.clone(), self.store.clone(), self.keys.clone()).await.unwrap()
    }

    /// Number of audit entries, after checking every entry against its leaf hash.
    pub async fn audit_len(&self) -> i64 {
        let mut head = ca_service::audit::LogHead::default();
        loop {
            let page = self.store.audit_entries(head.seq, 500).await.unwrap();
            if page.is_empty() {
                return head.seq;
            }
            head = ca_service::audit::verify(head, &page).unwrap();
        }
    }
}

/// A P-256 CSR for `cn`, made with rcgen (an independent implementation from the
/// service's own certificate path, which only signs certificates).
pub fn csr(cn: &str) -> Vec<u8> {
    csr_with(cn, &rcgen::PKCS_ECDSA_P256_SHA256, |_| {})
}

pub fn csr_with(
    cn: &str,
    alg: &'static rcgen::SignatureAlgorithm,
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    tweak(&mut p);
    p.serialize_request(&key).unwrap().der().to_vec()
}
