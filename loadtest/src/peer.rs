//! The peer: Debian's `cfssl serve`, with a fresh P-256 CA, in one of two set-ups.
//!
//! - **plain**: HTTP, no database: it signs and answers, storing nothing. This is
//!   much less work than an EST enrollment; it stays as a second line.
//! - **full**: what we do: HTTPS with client authentication (`-mutual-tls-ca`: the
//!   same station certificate our service is sent), and every certificate it signs
//!   stored in PostgreSQL (`-db-config`, its certdb schema, on the same server as
//!   ours) before it answers. The signing profile is the same (825 days, P-256).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};
use tokio::process::{Child, Command};

use crate::setup::{find_tool, free_ports, pg_connect, run, tail};

/// Longest cfssl may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// cfssl's certdb tables for PostgreSQL, as its migration 001 creates them
/// (cfssl ships the migrations in its source tree, not in the Debian binary
/// package). The ocsp_responses table is written only by `cfssl ocsprefresh`.
const CERTDB_SCHEMA: &str = "
CREATE TABLE certificates (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  ca_label                 bytea,
  status                   bytea NOT NULL,
  reason                   int,
  expiry                   timestamptz,
  revoked_at               timestamptz,
  pem                      bytea NOT NULL,
  PRIMARY KEY (serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  body                     bytea NOT NULL,
  expiry                   timestamptz,
  PRIMARY KEY (serial_number, authority_key_identifier),
  FOREIGN KEY (serial_number, authority_key_identifier)
    REFERENCES certificates (serial_number, authority_key_identifier)
);";

/// What the full peer needs beyond the plain one.
pub struct Full<'a> {
    /// A fresh, empty database (the certdb tables are created here).
    pub database_url: &'a str,
    /// The CA certificate(s) client certificates must chain to, PEM.
    pub client_ca_pem: &'a str,
}

/// A running `cfssl serve` (killed on drop).
pub struct Cfssl {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// With TLS: the anchor the load clients must trust for the server certificate.
    pub tls_root_der: Option<Vec<u8>>,
}

/// The message for a missing cfssl.
pub fn cfssl_missing() -> String {
    "cfssl is not on the PATH. Install Debian's package with `apt-get install -y golang-cfssl`, \
     or run with --peer none"
        .to_string()
}

/// Makes a CA with `cfssl genkey -initca` and starts `cfssl serve` with a default
/// signing profile for client certificates; `full` adds TLS, client authentication
/// and the database. `name` keeps the two set-ups apart in `dir`.
pub async fn cfssl(dir: &Path, name: &str, full: Option<Full<'_>>) -> Result<Cfssl> {
    let cfssl = find_tool("cfssl").ok_or_else(|| anyhow!(cfssl_missing()))?;
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let csr = dir.join("ca-csr.json");
    std::fs::write(&csr, r#"{"CN":"cfssl Load CA","key":{"algo":"ecdsa","size":256},"names":[{"O":"est-load"}]}"#)?;
    let out = run(Command::new(&cfssl).current_dir(&dir).args(["genkey", "-initca"]).arg(&csr), "cfssl genkey -initca")
        .await?;
    let v: serde_json::Value = serde_json::from_str(&out).context("cfssl genkey output is not JSON")?;
    let (Some(cert), Some(key)) = (v["cert"].as_str(), v["key"].as_str()) else {
        bail!("cfssl genkey printed no cert/key:\n{out}");
    };
    std::fs::write(dir.join("ca.pem"), cert)?;
    std::fs::write(dir.join("ca-key.pem"), key)?;
    // Same validity as the service's device profile (825 days).
    std::fs::write(
        dir.join("config.json"),
        r#"{"signing":{"default":{"usages":["digital signature","client auth"],"expiry":"19800h"}}}"#,
    )?;
    let (port, _) = free_ports()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let port_s = port.to_string();
    let mut cmd = Command::new(&cfssl);
    cmd.current_dir(&dir)
        .args(["serve", "-address", "127.0.0.1", "-port", &port_s, "-ca", "ca.pem", "-ca-key", "ca-key.pem"])
        // -loglevel 2 (warnings), as the service runs with CA_LOG=warn.
        .args(["-config", "config.json", "-loglevel", "2"]);
    let mut tls_root_der = None;
    if let Some(full) = full {
        let (root, server_cert, server_key) = server_identity()?;
        std::fs::write(dir.join("tls.pem"), server_cert)?;
        std::fs::write(dir.join("tls-key.pem"), server_key)?;
        std::fs::write(dir.join("clients.pem"), full.client_ca_pem)?;
        certdb(full.database_url).await?;
        let db = serde_json::json!({ "driver": "postgres", "data_source": full.database_url });
        std::fs::write(dir.join("db.json"), db.to_string())?;
        cmd.args(["-tls-cert", "tls.pem", "-tls-key", "tls-key.pem", "-mutual-tls-ca", "clients.pem"])
            .args(["-db-config", "db.json"]);
        tls_root_der = Some(root);
    }
    let log = dir.join("cfssl.log");
    let file = std::fs::File::create(&log)?;
    cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).kill_on_drop(true);
    let mut child = cmd.spawn().context("starting cfssl serve")?;
    // With -loglevel 2 it prints nothing when it listens: poll the port.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("cfssl serve exited during start ({status}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Cfssl { child, addr, log, tls_root_der });
        }
        if Instant::now() >= deadline {
            bail!("cfssl serve did not listen within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the certdb tables in `database_url`.
async fn certdb(database_url: &str) -> Result<()> {
    let client = pg_connect(database_url).await?;
    client.batch_execute(CERTDB_SCHEMA).await.context("creating cfssl's certdb tables")
}

/// A P-256 TLS root and a server certificate for 127.0.0.1 under it (PEM), as our
/// service's HTTPS listener has: the root's DER, the server certificate, its key.
fn server_identity() -> Result<(Vec<u8>, String, String)> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut root = CertificateParams::default();
    root.distinguished_name.push(DnType::CommonName, "est-load cfssl TLS root");
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key)?;
    let issuer = rcgen::Issuer::new(root, &root_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((root_cert.der().to_vec(), cert.pem(), key.serialize_pem()))
}

impl Cfssl {
    /// The last `n` lines cfssl logged.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
