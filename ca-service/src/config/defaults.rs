//! The built-in defaults: the embedded evaluation setup (SQLite and software keys
//! under `./pki-data`) with the full default hierarchy of DESIGN §4 and its profiles.

use super::*;

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("./pki-data");
        let mut key_stores = BTreeMap::new();
        key_stores.insert(
            "default".to_string(),
            KeyStoreConfig::Software {
                dir: data_dir.join("keys"),
                passphrase_env: None,
                passphrase_file: Some(data_dir.join("keystore.pass")),
                key_file: None,
            },
        );
        let ca = |subject: &str, parent: Option<&str>, label: &str, alg, days, path_len, issuing| CaConfig {
            subject: subject.to_string(),
            parent: parent.map(str::to_string),
            key_store: "default".into(),
            key_label: label.to_string(),
            algorithm: alg,
            validity_days: days,
            path_len,
            issuing,
        };
        let mut cas = BTreeMap::new();
        cas.insert(
            "identity-root".into(),
            ca("CN=Identity Root CA,O=Device PKI", None, "ca-identity-root", KeyAlgorithm::EcdsaP384, 7305, 1, false),
        );
        cas.insert(
            "device".into(),
            ca(
                "CN=Device Issuing CA,O=Device PKI",
                Some("identity-root"),
                "ca-device",
                KeyAlgorithm::EcdsaP256,
                3652,
                0,
                true,
            ),
        );
        cas.insert(
            "station".into(),
            ca(
                "CN=Station CA,O=Device PKI",
                Some("identity-root"),
                "ca-station",
                KeyAlgorithm::EcdsaP256,
                3652,
                0,
                true,
            ),
        );
        cas.insert(
            "update-root".into(),
            ca("CN=Update Root CA,O=Device PKI", None, "ca-update-root", KeyAlgorithm::EcdsaP384, 7305, 1, false),
        );
        cas.insert(
            "update-authority".into(),
            ca(
                "CN=Update Authority CA,O=Device PKI",
                Some("update-root"),
                "ca-update-authority",
                KeyAlgorithm::EcdsaP256,
                3652,
                0,
                true,
            ),
        );
        let profile = |kind, issuer: &str, days| ProfileConfig {
            kind,
            issuer: issuer.to_string(),
            validity_days: days,
            key_types: KeyType::ALL.to_vec(),
            default_model: None,
            organization: Some("Device PKI".into()),
            approval: Approval::Automatic,
            station_credentials: false,
            renewal: RenewalConfig::default(),
        };
        let mut profiles = BTreeMap::new();
        profiles.insert(
            "device".into(),
            ProfileConfig { default_model: Some("generic".into()), ..profile(ProfileKind::Device, "device", 825) },
        );
        profiles.insert("station".into(), profile(ProfileKind::Station, "station", 365));
        profiles.insert("update-signing".into(), profile(ProfileKind::UpdateSigning, "update-authority", 90));
        profiles.insert("tls-server".into(), profile(ProfileKind::TlsServer, "device", 90));
        profiles.insert("operator".into(), profile(ProfileKind::Operator, "station", 365));
        // One OCSP-signer profile per issuing CA: a delegated responder must be
        // issued by the CA whose certificates it answers for.
        for issuer in ["device", "station", "update-authority"] {
            profiles.insert(format!("ocsp-signer-{issuer}"), profile(ProfileKind::OcspSigner, issuer, 30));
        }
        let mut models = BTreeMap::new();
        // Private-enterprise arc placeholder; replace with your own PEN arc.
        models.insert("generic".into(), ModelConfig { oid: "1.3.6.1.4.1.59999.1.1".into() });
        Config {
            public_base_url: "http://127.0.0.1:8080".into(),
            server: ServerConfig {
                http: SocketAddr::from(([127, 0, 0, 1], 8080)),
                https: SocketAddr::from(([127, 0, 0, 1], 8443)),
                // An IP SAN: "localhost" is a single-label dNSName, which strict RFC 5280
                // linters reject.
                tls_names: vec!["127.0.0.1".into()],
                tls_issuer: "device".into(),
                tls_key_store: None,
                tls_cert_file: None,
                tls_key_file: None,
                log_format: "text".into(),
            },
            storage: StorageConfig { url: format!("sqlite:{}", data_dir.join("pki.db").display()) },
            data_dir,
            key_stores,
            cas,
            profiles,
            models,
            issuance: IssuanceConfig { max_batch: 256 },
            crl: CrlConfig {
                validity_secs: 86_400,
                regenerate_secs: 60,
                base_regenerate_secs: None,
                delta_crls: true,
                shards: 1,
            },
            ocsp: OcspConfig { cache_mib: 256 },
            updates: UpdatesConfig {
                profile: "update-signing".into(),
                approvals: 2,
                request_ttl_secs: 7 * 86_400,
                max_validity_days: 90,
                // Private-enterprise arc placeholder, next to the models'; use your own.
                policy_arc: "1.3.6.1.4.1.59999.3".into(),
                classes: BTreeMap::from([("generic".to_string(), 1)]),
            },
            log: LogConfig {
                origin: None,
                key_store: None,
                key_label: "audit-log".into(),
                algorithm: KeyAlgorithm::Ed25519,
                checkpoint_interval_ms: 1000,
                public_entries: false,
            },
            metrics: MetricsConfig { listen: MetricsListen::Public, sample_secs: 15, count_secs: 60 },
            console: ConsoleConfig { enabled: true, idle_timeout_secs: 900, max_session_secs: 8 * 3600 },
            est: EstConfig {
                profile: "device".into(),
                labels: BTreeMap::new(),
                renewal_min_interval_secs: 3600,
                allow_same_key_renewal: false,
                station_enrollments_per_minute: 0,
                retry_window_secs: default_retry_window_secs(),
            },
        }
    }
}
