//! Configuration: built-in defaults, then one TOML file, then `CA_…` environment
//! variables (`CA_STORAGE__URL`, `CA_CAS__DEVICE__KEY_STORE`, …; `__` separates
//! levels). Secrets never live here: key stores name the environment variable or
//! file that holds their PIN or passphrase.
//!
//! With no file at all the defaults describe the embedded evaluation setup: SQLite and
//! software keys under `./pki-data`, and the full default hierarchy of DESIGN §4.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use hsm::{KeyAlgorithm, SecretSource};
use serde::{Deserialize, Serialize};

/// Profile kinds, approval modes and key types are the registration authority's terms.
pub use enrollment::ra::{Approval, KeyType, ProfileKind};

mod defaults;
mod strict;

pub use strict::NOT_CONFIG_VARS;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded defaults keep their files (database, keys, passphrase).
    pub data_dir: PathBuf,
    /// Base URL of the public HTTP listener as relying parties reach it; CRL
    /// Distribution Points and AIA in certificates are built from it.
    pub public_base_url: String,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    /// Named key stores; each CA picks one, so roots can live on an offline token.
    pub key_stores: BTreeMap<String, KeyStoreConfig>,
    /// The hierarchy, by CA name. Parents must be created before children; `init`
    /// orders them.
    pub cas: BTreeMap<String, CaConfig>,
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Device models: name → the OID that goes into HardwareModuleName.hwType.
    pub models: BTreeMap<String, ModelConfig>,
    pub issuance: IssuanceConfig,
    pub est: EstConfig,
    pub crl: CrlConfig,
    pub ocsp: OcspConfig,
    pub updates: UpdatesConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub console: ConsoleConfig,
}

/// The operator console (`crate::console`) on the HTTPS listener.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve `/console/` (off: 404, and no sessions are kept).
    pub enabled: bool,
    /// A session unused this long ends (the next request signs in again).
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in, however busy.
    pub max_session_secs: u64,
}

/// Prometheus metrics (see `crate::telemetry`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served: `public` (the public HTTP listener), `off`, or
    /// an address of its own such as `127.0.0.1:9100` (plain HTTP, only `/metrics`).
    pub listen: MetricsListen,
    /// How often the gauges about stored state (pools, log head, CRLs) are read.
    pub sample_secs: u64,
    /// How often certificates are counted by issuer, profile and state (one grouped
    /// read of an index: about a second at 10M certificates).
    pub count_secs: u64,
}

/// Where metrics are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    Public,
    Off,
    Address(SocketAddr),
}

impl TryFrom<String> for MetricsListen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "public" => Ok(MetricsListen::Public),
            "off" => Ok(MetricsListen::Off),
            other => other.parse().map(MetricsListen::Address).map_err(|_| {
                format!("metrics.listen must be 'public', 'off' or an address such as 127.0.0.1:9100, not '{other}'")
            }),
        }
    }
}

impl From<MetricsListen> for String {
    fn from(l: MetricsListen) -> String {
        match l {
            MetricsListen::Public => "public".into(),
            MetricsListen::Off => "off".into(),
            MetricsListen::Address(a) => a.to_string(),
        }
    }
}

impl Serialize for MetricsListen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from(*self))
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MetricsListen::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The transparency log the audit trail is kept in (see `crate::transparency`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log's name in its checkpoints and verifier key (C2SP origin), a schema-less
    /// URL such as `pki.example.com/audit-log`; by default the host of
    /// `public_base_url` followed by `/audit-log`. Monitors pin it: never change it.
    pub origin: Option<String>,
    /// The key store that holds the audit log key (the HSM in production); by default
    /// the one of the online issuing CA (`server.tls_issuer`).
    pub key_store: Option<String>,
    pub key_label: String,
    /// `ed25519` (signed-note type 0x01, what public logs must use) or `ecdsa-p256` (0x02).
    pub algorithm: KeyAlgorithm,
    /// How often the checkpoint job looks for new entries and signs, milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Whether the entry bundles (`/log/tile/entries/…`) are public; they name devices,
    /// so by default only the `auditor` role and above may read them. The checkpoint
    /// and the hash tiles are always public.
    pub public_entries: bool,
}

impl Config {
    /// The key store of the audit log key: configured, or the online issuing CA's.
    pub fn log_key_store(&self) -> String {
        self.log.key_store.clone().unwrap_or_else(|| {
            self.cas.get(&self.server.tls_issuer).map_or_else(|| "default".to_string(), |ca| ca.key_store.clone())
        })
    }

    /// The transparency log's origin: configured, or derived from `public_base_url`.
    pub fn log_origin(&self) -> String {
        if let Some(origin) = &self.log.origin {
            return origin.clone();
        }
        let host = self.public_base_url.split_once("://").map_or(self.public_base_url.as_str(), |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or("localhost");
        format!("{host}/audit-log")
    }
}

/// Update-signing certificates for the OTA pipeline: requested by a release manager,
/// signed only after `approvals` distinct update approvers approve.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdatesConfig {
    /// The update-signing profile requests are issued under.
    pub profile: String,
    /// Distinct approvers a request needs (at least 2), none of them the requester.
    pub approvals: usize,
    /// A request not signed within this long expires and can never be signed, seconds.
    pub request_ttl_secs: u64,
    /// The longest validity a request may ask for, days.
    pub max_validity_days: u32,
    /// The OID arc of device-class policies: class N is certificate policy `<arc>.N`.
    pub policy_arc: String,
    /// Device classes an update may be scoped to: name → number under `policy_arc`.
    /// Numbers are forever: a device checks for its class's OID.
    pub classes: BTreeMap<String, u32>,
}

impl UpdatesConfig {
    /// The certificate-policy OID of a device class.
    pub fn class_oid(&self, class: &str) -> Option<const_oid::ObjectIdentifier> {
        let n = self.classes.get(class)?;
        format!("{}.{n}", self.policy_arc).parse().ok()
    }
}

/// CRL publishing on the public listener (`/crl/{ca}.crl`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrlConfig {
    /// nextUpdate − thisUpdate, seconds.
    pub validity_secs: u64,
    /// How often the scheduled job publishes CRLs, seconds: a revocation made
    /// anywhere is in the published (delta, or else complete) CRL within this bound.
    pub regenerate_secs: u64,
    /// With delta CRLs, how often the complete (base) CRLs are re-published,
    /// seconds; deltas carry what changed in between. Default: `regenerate_secs`.
    #[serde(default)]
    pub base_regenerate_secs: Option<u64>,
    /// Publish delta CRLs (RFC 5280 §5.2.4) and point certificates at them with
    /// freshestCRL.
    #[serde(default)]
    pub delta_crls: bool,
    /// Partition each issuing CA's certificates into this many CRL shards (1 = no
    /// sharding). A certificate's shard is fixed at issuance; its cRLDistributionPoints
    /// names the shard's CRL, which carries a critical issuingDistributionPoint.
    #[serde(default = "one")]
    pub shards: u32,
}

fn one() -> u32 {
    1
}

/// The OCSP responder on the public listener (`/ocsp`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcspConfig {
    /// Memory for pre-signed answers, MiB (about 1 KiB each). Answers beyond it are
    /// evicted, the least asked for first, and signed again when asked.
    pub cache_mib: u64,
}

/// EST (RFC 7030) on the HTTPS listener.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EstConfig {
    /// Profile served at `/.well-known/est/` (a `device` kind profile).
    pub profile: String,
    /// `/.well-known/est/{label}/…` → profile name.
    pub labels: BTreeMap<String, String>,
    /// Least time between two certificates of one device (renewal rate limit), seconds.
    pub renewal_min_interval_secs: u64,
    /// Whether a renewal may keep the current public key (RFC 7030 allows it; key
    /// rotation is the safer default).
    pub allow_same_key_renewal: bool,
    /// Enrollments per station per minute; 0 = unlimited.
    pub station_enrollments_per_minute: u32,
    /// How long a station that repeats an enrollment (same CSR) gets the certificate
    /// already issued for it instead of a refusal, seconds (a lost answer must not
    /// strand a device).
    #[serde(default = "default_retry_window_secs")]
    pub retry_window_secs: u64,
}

/// The longest retry window accepted: a repeat is for an answer lost in transit, not
/// a standing way to fetch a certificate again.
pub const MAX_RETRY_WINDOW_SECS: u64 = 30 * 24 * 3600;

fn default_retry_window_secs() -> u64 {
    24 * 3600
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Public plain-HTTP listener: health, CA certificates (and later CRL/OCSP).
    pub http: SocketAddr,
    /// Authenticated HTTPS listener (EST, admin API).
    pub https: SocketAddr,
    /// Host names and IP addresses the HTTPS server certificate is issued for.
    pub tls_names: Vec<String>,
    /// CA that issues the HTTPS server certificate (key kept in that CA's key store).
    pub tls_issuer: String,
    /// Key store for the HTTPS server key (default: the TLS issuer CA's store). Every
    /// TLS handshake signs with this key: a slow HSM here caps handshakes per second.
    #[serde(default)]
    pub tls_key_store: Option<String>,
    /// Instead: a certificate chain (PEM, leaf first) and its private key (PEM,
    /// PKCS#8/SEC1/PKCS#1) from files, e.g. from a public CA. Both or neither.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Log format: `text` or `json`.
    pub log_format: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite:PATH` (relative to the working directory) or `postgres://…`.
    pub url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KeyStoreConfig {
    /// Keys encrypted at rest under a passphrase (Argon2id) or a 32-byte key file.
    Software {
        dir: PathBuf,
        /// Environment variable holding the passphrase.
        passphrase_env: Option<String>,
        /// File holding the passphrase.
        passphrase_file: Option<PathBuf>,
        /// File holding a raw 32-byte key-encryption key (instead of a passphrase).
        key_file: Option<PathBuf>,
    },
    /// A PKCS#11 token (HSM; SoftHSM2 in tests).
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        pin_env: Option<String>,
        pin_file: Option<PathBuf>,
        /// Logged-in sessions kept for signing; default: one per core.
        sessions: Option<usize>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// RFC 4514 style subject, e.g. `CN=Device Issuing CA,O=Example`.
    pub subject: String,
    /// The issuing CA; absent for a root.
    pub parent: Option<String>,
    pub key_store: String,
    pub key_label: String,
    pub algorithm: KeyAlgorithm,
    pub validity_days: u32,
    /// basicConstraints pathLenConstraint.
    pub path_len: u8,
    /// Whether this CA issues end-entity certificates (gets an OCSP signer and a CRL).
    pub issuing: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub kind: ProfileKind,
    /// The CA that signs certificates of this profile.
    pub issuer: String,
    pub validity_days: u32,
    /// Accepted request key types: `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa` (≥ 2048).
    pub key_types: Vec<KeyType>,
    /// Model assumed when the request names none (device profile).
    pub default_model: Option<String>,
    /// Organization put in the subject, if any.
    pub organization: Option<String>,
    /// `automatic`, or `manual`: EST enrollments wait (202 + Retry-After) until an
    /// operator approves them with `ca-service est approve`.
    #[serde(default)]
    pub approval: Approval,
    /// Whether stations may authenticate EST requests for this profile with their
    /// HTTP credential (Basic/Bearer) instead of a client certificate.
    #[serde(default)]
    pub station_credentials: bool,
    /// When its certificates should be renewed (the EST renewal-info window).
    #[serde(default)]
    pub renewal: RenewalConfig,
}

/// A profile's renewal window (draft-ietf-lamps-est-renewal-info), as fractions of a
/// certificate's lifetime: centred at `window_centre`, `window_width` wide, and shifted
/// per certificate by up to ±`jitter`/2 (drawn from its serial), so that a fleet issued
/// within one hour does not renew within one hour. Devices ask again after
/// `recheck_secs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RenewalConfig {
    pub window_centre: f64,
    pub window_width: f64,
    pub jitter: f64,
    pub recheck_secs: u64,
}

impl Default for RenewalConfig {
    /// ACME ARI's practice (Boulder: two thirds of the lifetime), a tenth of the
    /// lifetime wide and spread over another tenth; asked about once a day.
    fn default() -> Self {
        Self::from(enrollment::ra::RenewalPolicy::default())
    }
}

impl From<enrollment::ra::RenewalPolicy> for RenewalConfig {
    fn from(p: enrollment::ra::RenewalPolicy) -> Self {
        let fraction = |ppm: i64| ppm as f64 / enrollment::ra::MILLION as f64;
        Self {
            window_centre: fraction(p.centre_ppm),
            window_width: fraction(p.width_ppm),
            jitter: fraction(p.jitter_ppm),
            recheck_secs: p.recheck_secs,
        }
    }
}

impl RenewalConfig {
    /// The policy the registration authority computes windows by, or why not.
    pub fn policy(&self) -> Result<enrollment::ra::RenewalPolicy, String> {
        let ppm = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok((v * enrollment::ra::MILLION as f64).round() as i64)
            } else {
                Err(format!("renewal.{name} = {v} is not a fraction of the lifetime between 0 and 1"))
            }
        };
        let policy = enrollment::ra::RenewalPolicy {
            centre_ppm: ppm("window_centre", self.window_centre)?,
            width_ppm: ppm("window_width", self.window_width)?,
            jitter_ppm: ppm("jitter", self.jitter)?,
            recheck_secs: self.recheck_secs,
        };
        policy.check()?;
        Ok(policy)
    }
}

impl ProfileConfig {
    /// What the registration authority decides this profile by.
    pub fn policy(&self) -> enrollment::ra::ProfilePolicy {
        enrollment::ra::ProfilePolicy {
            kind: self.kind,
            key_types: self.key_types.clone(),
            approval: self.approval,
            station_credentials: self.station_credentials,
            default_model: self.default_model.clone(),
            // Checked by `Config::validate` at start; a bad one falls back to the default.
            renewal: self.renewal.policy().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Dotted OID identifying the hardware model (HardwareModuleName.hwType).
    pub oid: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuanceConfig {
    /// Most certificates committed in one storage transaction.
    pub max_batch: usize,
}

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "CA_";

impl Config {
    /// Loads defaults ← `path` (if given; it must exist) ← `CA_…` environment.
    /// Unknown keys in either are an error naming the key and the nearest known one.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(path)?)
    }

    /// The layered sources, for callers (tests, tools) that add their own layer.
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        Self::figment_with_env(path, ENV_PREFIX)
    }

    fn figment_with_env(path: Option<&Path>, env_prefix: &str) -> Result<Figment, ConfigError> {
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
        }
        let layers = |fig: Figment| {
            let fig = match path {
                Some(path) => fig.merge(Toml::file_exact(path)),
                None => fig,
            };
            // `CA_CONFIG` and `CA_LOG` share the prefix but are not configuration keys.
            let not_keys: Vec<String> = NOT_CONFIG_VARS
                .iter()
                .filter_map(|v| v.strip_prefix(ENV_PREFIX))
                .map(str::to_ascii_lowercase)
                .collect();
            let not_keys: Vec<&str> = not_keys.iter().map(String::as_str).collect();
            fig.merge(Env::prefixed(env_prefix).ignore(&not_keys).split("__"))
        };
        // figment merges maps key by key: a key store the file or environment gives
        // another type must not inherit the default's fields of the other type (they
        // would be unknown keys of its type).
        let user = layers(Figment::new());
        let mut defaults = Config::default();
        defaults.key_stores.retain(|name, ks| {
            let kind = user.find_value(&format!("key_stores.{name}.type")).ok().and_then(|v| v.into_string());
            kind.is_none_or(|k| k == ks.kind())
        });
        Ok(layers(Figment::from(Serialized::defaults(defaults))))
    }

    /// Extracts and validates.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        Self::extract(fig, ENV_PREFIX)
    }

    fn extract(fig: Figment, env_prefix: &str) -> Result<Self, ConfigError> {
        let config: Config = fig.extract().map_err(|e| ConfigError::Invalid(strict::describe(&fig, env_prefix, e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses secret files (passphrase, key-encryption key, PIN, TLS private key) that
    /// group or others may access, as ssh does with private keys. Only files that exist
    /// are checked: an offline root token's PIN file may be absent while `serve` runs
    /// (the key store reports a missing file when it is opened).
    pub fn check_secret_files(&self) -> Result<(), ConfigError> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for (name, ks) in &self.key_stores {
            if let Ok(SecretSource::File(path)) = ks.secret_source() {
                files.push((format!("key store '{name}'"), path));
            }
        }
        if let Some(key) = &self.server.tls_key_file {
            files.push(("server.tls_key_file".into(), key.clone()));
        }
        for (what, path) in files.into_iter().filter(|(_, path)| path.exists()) {
            hsm::check_secret_file(&path).map_err(|e| ConfigError::Invalid(format!("{what}: {e}")))?;
        }
        Ok(())
    }

    /// Cross-checks names so mistakes surface at start, not at first use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.est.retry_window_secs > MAX_RETRY_WINDOW_SECS {
            return bad(format!(
                "est.retry_window_secs = {} is more than {MAX_RETRY_WINDOW_SECS} (30 days)",
                self.est.retry_window_secs
            ));
        }
        let console = &self.console;
        if console.idle_timeout_secs == 0 || console.idle_timeout_secs > console.max_session_secs {
            return bad(format!(
                "console.idle_timeout_secs = {} must be at least 1 and at most console.max_session_secs = {}",
                console.idle_timeout_secs, console.max_session_secs
            ));
        }
        for (name, ca) in &self.cas {
            // A CA's later key generations are stored as `name.N` (rollover), and the name
            // is a path segment of its CRL and certificate URLs.
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
                return bad(format!("CA name '{name}': use letters, digits, '-' and '_' only"));
            }
            if !self.key_stores.contains_key(&ca.key_store) {
                return bad(format!("CA '{name}' uses unknown key store '{}'", ca.key_store));
            }
            if let Some(parent) = &ca.parent {
                if !self.cas.contains_key(parent) {
                    return bad(format!("CA '{name}' has unknown parent '{parent}'"));
                }
            }
        }
        self.ca_creation_order()?;
        for (name, p) in &self.profiles {
            if !self.cas.contains_key(&p.issuer) {
                return bad(format!("profile '{name}' names unknown issuer CA '{}'", p.issuer));
            }
            if let Some(model) = &p.default_model {
                if !self.models.contains_key(model) {
                    return bad(format!("profile '{name}' names unknown default model '{model}'"));
                }
            }
            if let Err(why) = p.renewal.policy() {
                return bad(format!("profile '{name}': {why}"));
            }
        }
        for (name, m) in &self.models {
            if m.oid.parse::<const_oid::ObjectIdentifier>().is_err() {
                return bad(format!("model '{name}': '{}' is not a dotted OID", m.oid));
            }
        }
        if !self.cas.contains_key(&self.server.tls_issuer) {
            return bad(format!("server.tls_issuer names unknown CA '{}'", self.server.tls_issuer));
        }
        if let Some(ks) = &self.server.tls_key_store {
            if !self.key_stores.contains_key(ks) {
                return bad(format!("server.tls_key_store names unknown key store '{ks}'"));
            }
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return bad("server.tls_cert_file and server.tls_key_file go together".into());
        }
        for name in &self.server.tls_names {
            if name.parse::<std::net::IpAddr>().is_err() && !name.contains('.') {
                return bad(format!(
                    "server.tls_names: '{name}' is a single-label DNS name, which strict RFC 5280 linters \
                     reject; use a fully qualified name or an IP address"
                ));
            }
        }
        for (label, profile) in std::iter::once((&"".to_string(), &self.est.profile)).chain(self.est.labels.iter()) {
            match self.profiles.get(profile) {
                Some(p) if p.kind == ProfileKind::Device => {}
                Some(_) => return bad(format!("est label '{label}': profile '{profile}' is not a device profile")),
                None => return bad(format!("est label '{label}': unknown profile '{profile}'")),
            }
            if !label.is_empty() && !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return bad(format!("est label '{label}': use letters, digits, '-' and '_'"));
            }
        }
        self.validate_updates()?;
        if !self.key_stores.contains_key(&self.log_key_store()) {
            return bad(format!("log.key_store names unknown key store '{}'", self.log_key_store()));
        }
        if !matches!(self.log.algorithm, KeyAlgorithm::Ed25519 | KeyAlgorithm::EcdsaP256) {
            return bad(format!("log.algorithm must be ed25519 or ecdsa-p256, not {}", self.log.algorithm));
        }
        let origin = self.log_origin();
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
            return bad(format!("log.origin '{origin}' must be non-empty, without spaces or '+'"));
        }
        if !(100..=3_600_000).contains(&self.log.checkpoint_interval_ms) {
            return bad("log.checkpoint_interval_ms must be 100..=3600000".into());
        }
        if self.ocsp.cache_mib == 0 {
            return bad("ocsp.cache_mib must be at least 1".into());
        }
        let base_every = self.crl.base_regenerate_secs.unwrap_or(self.crl.regenerate_secs);
        if self.crl.validity_secs == 0 || self.crl.regenerate_secs.max(base_every) >= self.crl.validity_secs {
            return bad("crl.validity_secs must be larger than crl.regenerate_secs and crl.base_regenerate_secs".into());
        }
        if !(1..=256).contains(&self.crl.shards) {
            return bad("crl.shards must be 1..=256".into());
        }
        if self.issuance.max_batch == 0 {
            return bad("issuance.max_batch must be at least 1".into());
        }
        if !(self.public_base_url.starts_with("http://") || self.public_base_url.starts_with("https://")) {
            return bad("public_base_url must start with http:// or https://".into());
        }
        Ok(())
    }

    fn validate_updates(&self) -> Result<(), ConfigError> {
        let u = &self.updates;
        let bad = |m: String| Err(ConfigError::Invalid(format!("updates: {m}")));
        match self.profiles.get(&u.profile) {
            Some(p) if p.kind == ProfileKind::UpdateSigning => {
                if p.validity_days > u.max_validity_days {
                    return bad(format!(
                        "profile '{}' validity {} days exceeds max_validity_days {}",
                        u.profile, p.validity_days, u.max_validity_days
                    ));
                }
            }
            Some(_) => return bad(format!("profile '{}' is not an update-signing profile", u.profile)),
            None => return bad(format!("unknown profile '{}'", u.profile)),
        }
        if u.approvals < 2 {
            return bad("approvals must be at least 2 (two-person rule)".into());
        }
        if u.request_ttl_secs == 0 || u.max_validity_days == 0 {
            return bad("request_ttl_secs and max_validity_days must be positive".into());
        }
        if u.policy_arc.parse::<const_oid::ObjectIdentifier>().is_err() {
            return bad(format!("policy_arc '{}' is not a dotted OID", u.policy_arc));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (class, n) in &u.classes {
            if !seen.insert(n) {
                return bad(format!("class '{class}' reuses number {n}"));
            }
            if class.is_empty() || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return bad(format!("class '{class}': use letters, digits, '-' and '_'"));
            }
            if u.class_oid(class).is_none() {
                return bad(format!("class '{class}': '{}.{n}' is not a valid OID", u.policy_arc));
            }
        }
        Ok(())
    }

    /// CA names with every parent before its children.
    pub fn ca_creation_order(&self) -> Result<Vec<String>, ConfigError> {
        let mut order: Vec<String> = Vec::new();
        while order.len() < self.cas.len() {
            let before = order.len();
            for (name, ca) in &self.cas {
                let ready = ca.parent.as_ref().is_none_or(|p| order.contains(p));
                if ready && !order.contains(name) {
                    order.push(name.clone());
                }
            }
            if order.len() == before {
                return Err(ConfigError::Invalid("the CA hierarchy has a parent cycle".into()));
            }
        }
        Ok(order)
    }

    /// The OCSP-signer profile for an issuing CA.
    pub fn ocsp_profile_for(&self, ca: &str) -> Option<(&String, &ProfileConfig)> {
        self.profiles.iter().find(|(_, p)| p.kind == ProfileKind::OcspSigner && p.issuer == ca)
    }
}

impl KeyStoreConfig {
    /// The `type` of the store as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyStoreConfig::Software { .. } => "software",
            KeyStoreConfig::Pkcs11 { .. } => "pkcs11",
        }
    }

    /// Where a software store's secret comes from.
    pub fn secret_source(&self) -> Result<SecretSource, ConfigError> {
        let (env, file, what) = match self {
            KeyStoreConfig::Software { passphrase_env, passphrase_file, key_file, .. } => {
                if let Some(k) = key_file {
                    return Ok(SecretSource::File(k.clone()));
                }
                (passphrase_env, passphrase_file, "passphrase_env or passphrase_file or key_file")
            }
            KeyStoreConfig::Pkcs11 { pin_env, pin_file, .. } => (pin_env, pin_file, "pin_env or pin_file"),
        };
        match (env, file) {
            (Some(var), _) => Ok(SecretSource::Env(var.clone())),
            (None, Some(path)) => Ok(SecretSource::File(path.clone())),
            (None, None) => Err(ConfigError::Invalid(format!("key store needs {what}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_ordered() {
        let c = Config::default();
        c.validate().unwrap();
        let order = c.ca_creation_order().unwrap();
        let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(pos("identity-root") < pos("device"));
        assert!(pos("update-root") < pos("update-authority"));
    }

    #[test]
    fn unknown_references_are_refused() {
        let mut c = Config::default();
        c.cas.get_mut("device").unwrap().parent = Some("nope".into());
        assert!(c.validate().unwrap_err().to_string().contains("unknown parent 'nope'"));
        let mut c = Config::default();
        c.profiles.get_mut("device").unwrap().issuer = "ghost".into();
        assert!(c.validate().unwrap_err().to_string().contains("ghost"));
        let mut c = Config::default();
        c.cas.get_mut("identity-root").unwrap().parent = Some("device".into());
        assert!(c.validate().unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn ca_names_cannot_look_like_a_key_generation() {
        for bad in ["device.2", "dev ice", "dev/ice", ""] {
            let mut c = Config::default();
            let ca = c.cas.get("station").unwrap().clone();
            c.cas.insert(bad.into(), ca);
            assert!(c.validate().unwrap_err().to_string().contains("use letters, digits"), "{bad:?}");
        }
    }

    #[test]
    fn single_label_tls_names_are_refused() {
        let mut c = Config::default();
        c.server.tls_names = vec!["localhost".into()];
        assert!(c.validate().unwrap_err().to_string().contains("single-label"));
        c.server.tls_names = vec!["pki.example.com".into(), "::1".into(), "10.0.0.1".into()];
        c.validate().unwrap();
    }

    #[test]
    fn an_ocsp_cache_of_nothing_is_refused() {
        let mut c = Config::default();
        c.ocsp.cache_mib = 0;
        assert!(c.validate().unwrap_err().to_string().contains("ocsp.cache_mib"));
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(matches!(Config::load(Some(Path::new("/nonexistent/x.toml"))), Err(ConfigError::Missing(_))));
    }
}
