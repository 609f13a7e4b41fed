//! `deploy/dev.toml` and `deploy/production.toml` load, validate, and actually work:
//! each builds a hierarchy and issues a device certificate, the production one on
//! PostgreSQL with its two PKCS#11 tokens (SoftHSM here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use ca_service::config::{Config, KeyStoreConfig};
use ca_service::issuance::{IssueRequest, Pki};
use ca_service::keys::KeyStores;
use figment::providers::Serialized;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

async fn init_and_issue(config: Config) -> Vec<u8> {
    let config = Arc::new(config);
    let store = ca_service::store::open(&config.storage.url).await.unwrap();
    let keys = Arc::new(KeyStores::new(&config));
    ca_service::hierarchy::init(config.clone(), store.clone(), keys.clone(), "test").await.unwrap();
    let pki = Pki::load(config, store, keys).await.unwrap();
    let issued = pki
        .issue(IssueRequest {
            profile: "device".into(),
            csr: enrollment::check_csr(&common::csr("SN-DEPLOY-1")).unwrap(),
            device_id: None,
            model: None,
            actor: "test".into(),
        })
        .await
        .unwrap();
    issued.record.der
}

// One test function: it sets process environment variables (the PINs), which must
// not race with other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_configs_load_and_issue() {
    // dev.toml: SQLite + software keys, passphrase from the environment.
    let dev = Config::load(Some(&deploy("dev.toml"))).unwrap();
    assert!(dev.storage.url.starts_with("sqlite:"));
    assert!(matches!(dev.key_stores["default"], KeyStoreConfig::Software { passphrase_env: Some(_), .. }));
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("PKI_KEYSTORE_PASSPHRASE", "correct horse battery staple, dev only");
    let fig = Config::figment(Some(&deploy("dev.toml")))
        .unwrap()
        .merge(Serialized::default("storage.url", format!("sqlite:{}", dir.path().join("pki.db").display())))
        .merge(Serialized::default("key_stores.default.dir", dir.path().join("keys")));
    let der = init_and_issue(Config::from_figment(fig).unwrap()).await;
    assert!(!der.is_empty());

    // production.toml: PostgreSQL + two PKCS#11 tokens (roots apart from online keys).
    let prod = Config::load(Some(&deploy("production.toml"))).unwrap();
    assert!(prod.storage.url.starts_with("postgres://"));
    assert!(matches!(prod.key_stores["online"], KeyStoreConfig::Pkcs11 { .. }));
    assert_eq!(prod.cas["identity-root"].key_store, "roots");
    assert_eq!(prod.cas["device"].key_store, "online");
    assert!(!prod.cas["identity-root"].issuing);

    let online = hsm::testing::SoftHsmFixture::new().unwrap();
    let roots = hsm::testing::SoftHsmFixture::new().unwrap();
    std::env::set_var("PKI_HSM_PIN", &online.user_pin);
    std::env::set_var("PKI_ROOT_HSM_PIN", &roots.user_pin);
    let db = common::TempDb::create().await;
    let fig = Config::figment(Some(&deploy("production.toml")))
        .unwrap()
        .merge(Serialized::default("storage.url", &db.url))
        .merge(Serialized::default("key_stores.online.module", &online.config.module))
        .merge(Serialized::default("key_stores.online.token_label", &online.config.token_label))
        .merge(Serialized::default("key_stores.roots.module", &roots.config.module))
        .merge(Serialized::default("key_stores.roots.token_label", &roots.config.token_label));
    let config = Config::from_figment(fig).unwrap();
    let der = init_and_issue(config.clone()).await;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    // The production device profile's default model lands in the SAN.
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(format!("{:?}", san.value.general_names).contains("1.3.6.1.5.5.7.8.4"));
    assert!(cert.subject().to_string().contains("SN-DEPLOY-1"));

    // The root keys are on the roots token only.
    let keys = KeyStores::new(&config);
    assert!(keys.find("roots", "ca-identity-root").is_ok());
    assert!(keys.find("online", "ca-identity-root").is_err());
    assert!(keys.find("online", "ca-device").is_ok());
}
