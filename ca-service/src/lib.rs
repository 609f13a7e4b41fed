//! The device PKI service, the workspace's composition root: configuration, the CA
//! hierarchy and its key ceremony, certificate profiles, issuance (the group-commit
//! writer), storage (SQLite and PostgreSQL), the hash-chained audit log, EST, the OCSP
//! responder and CRL publisher, the admin API, update-signing requests (two-person
//! rule), the HTTP/TLS servers and the `ca-service` CLI.
//!
//! The other crates (`hsm`, `enrollment`, `revocation`, `update-trust`) know nothing of
//! storage or configuration; this crate wires them to both. The decisions behind the
//! main parts are recorded in the repository's `docs/`.

pub mod abuse;
pub mod admin;
pub mod audit;
pub mod batch;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod crl;
pub mod est;
pub mod fault;
pub mod hierarchy;
pub mod issuance;
pub mod keys;
pub mod ocsp;
pub mod ota;
pub mod profile;
pub mod ra;
pub mod revoke;
pub mod server;
pub mod store;
pub mod tls;
pub mod updates;

/// Installs the tracing subscriber (stderr; `text` or `json`), once. `CA_LOG`
/// (an `EnvFilter` directive) overrides `default_level`.
pub fn init_logging(format: &str, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // cryptoki logs every mechanism number it has no name for at ERROR while listing
    // a token's mechanisms: noise, not an error of ours. Silenced unless the operator's
    // own filter says something about cryptoki.
    let mut directives = std::env::var("CA_LOG").unwrap_or_else(|_| default_level.to_string());
    if !directives.contains("cryptoki") {
        directives.push_str(",cryptoki::mechanism=off");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
