//! The command line's shape: every command, subcommand and flag (clap derive types).
//! What a command does lives in the module named after it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ca-service", version, about = "Device PKI: CA hierarchy, issuance, audit")]
pub struct Cli {
    /// Configuration file (TOML). Without it the embedded evaluation defaults are used:
    /// SQLite and software keys under ./pki-data. Every key can be overridden by a
    /// CA_… environment variable (CA_STORAGE__URL, CA_SERVER__HTTP, …).
    #[arg(long, global = true, env = "CA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the CA hierarchy (keys in the configured key stores). Refuses to
    /// overwrite an existing one.
    Init,
    /// Run the HTTP (public) and HTTPS listeners.
    Serve,
    /// Issue one certificate from a CSR (batch/offline issuance); prints the PEM chain.
    Issue {
        #[arg(long)]
        profile: String,
        /// PKCS#10 request, PEM or DER.
        #[arg(long)]
        csr: PathBuf,
        /// Device id (device profile; default: the CSR's commonName).
        #[arg(long)]
        device_id: Option<String>,
        /// Device model (device profile; default: the profile's default model).
        #[arg(long)]
        model: Option<String>,
        /// Write the chain here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate: EST refuses it at once; CRLs carry it within
    /// `crl.regenerate_secs`.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "device", "batch", "model"])))]
    Revoke {
        /// Issuing CA name (e.g. `device`), with --serial.
        #[arg(long, requires = "serial")]
        issuer: Option<String>,
        /// Serial number, hex (colons allowed).
        #[arg(long, requires = "issuer")]
        serial: Option<String>,
        /// Instead: a device id; all its certificates are revoked and it can no
        /// longer enroll or renew.
        #[arg(long, conflicts_with_all = ["issuer", "serial", "batch", "model"])]
        device: Option<String>,
        /// Instead: every device registered in a batch.
        #[arg(long, conflicts_with_all = ["issuer", "serial", "model"])]
        batch: Option<String>,
        /// Instead: every device of a model.
        #[arg(long, conflicts_with_all = ["issuer", "serial"])]
        model: Option<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn,
        /// aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Rotate a device, a batch or a model: their renewal window becomes now … --by
    /// (renewals inside it skip the rate limit); at the deadline, certificates not yet
    /// replaced stay (reported) or are revoked as `superseded` (--after-deadline revoke).
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["device", "batch", "model"])))]
    Rotate {
        #[arg(long, conflicts_with_all = ["batch", "model"])]
        device: Option<String>,
        #[arg(long, conflicts_with = "model")]
        batch: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Deadline: RFC 3339 (2026-12-31T00:00:00Z) or from now (7d, 12h, 90m).
        #[arg(long)]
        by: String,
        /// Why (kept in the rotation and its audit entry).
        #[arg(long)]
        reason: Option<String>,
        /// `nothing` (default) or `revoke`.
        #[arg(long)]
        after_deadline: Option<String>,
        /// After a suspected key exposure: a renewal must bring a new key.
        #[arg(long)]
        key_exposure: bool,
    },
    /// Rotations and their progress.
    Rotations {
        #[command(subcommand)]
        command: RotationsCommand,
    },
    /// Sign a CRL with the CA's own key and write it to a file: the ceremony for
    /// roots, whose keys the service never loads (it publishes the issuing CAs' CRLs
    /// itself at /crl/{ca}.crl).
    Crl {
        /// CA name (e.g. `identity-root`, `update-root`).
        #[arg(long)]
        ca: String,
        /// nextUpdate − thisUpdate, days. Publish a new one well before it passes.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Also write the CRL to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
    /// Firmware-update signatures: the reference signer and verifier (detached CMS).
    Ota {
        #[command(subcommand)]
        command: OtaCommand,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The transparency log the audit trail is kept in.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// CA commands.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Device registry: devices are known before they enroll.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Provisioning stations (EST simpleenroll clients).
    Stations {
        #[command(subcommand)]
        command: StationsCommand,
    },
    /// People using the admin API with a client certificate (instead of a token).
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
    },
    /// Admin API tokens (`Authorization: Bearer pki_<id>.<secret>`).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// EST enrollments that wait for an operator (profiles with `approval = "manual"`).
    Est {
        #[command(subcommand)]
        command: EstCommand,
    },
    /// Lifecycle reports: `counts`, `expiring` (within a window, or grouped), `stale`
    /// (active devices overdue for renewal), `never-enrolled`. As the admin API's
    /// `GET /api/v1/reports/{report}`; JSON or CSV on standard output, the next page's
    /// cursor on standard error.
    Report {
        /// counts, expiring, stale or never-enrolled.
        report: String,
        /// expiring: how far ahead (30d, 12h, 90m or seconds; default 30d).
        #[arg(long)]
        within: Option<String>,
        /// expiring: count by batch, model, profile or issuer instead of listing.
        #[arg(long)]
        group_by: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        batch: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// The cursor the previous page printed.
        #[arg(long)]
        after: Option<String>,
        /// Rows per page (default 1000, at most 10000).
        #[arg(long)]
        limit: Option<i64>,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Issue an operator certificate from the person's CSR (their key stays with
    /// them): CN = their name (from the CSR), OU = the role. Revoke it with
    /// `ca-service revoke` to withdraw the access.
    Add {
        /// PKCS#10 request, PEM or DER; its CN names the person.
        #[arg(long)]
        csr: PathBuf,
        /// admin, operator, auditor, release-manager or update-approver.
        #[arg(long)]
        role: String,
        /// Write the certificate chain here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Sign FILE with an update-signing key: writes a detached CMS signature (DER).
    Sign {
        /// The update-signing certificate (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// Intermediate CA certificates to include (PEM), e.g. the Update Authority CA.
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Unencrypted PKCS#8 PEM key file.
        #[arg(long, conflicts_with = "pkcs11_module", required_unless_present = "pkcs11_module")]
        key_file: Option<PathBuf>,
        /// Or a PKCS#11 module holding the key (with --token-label and --key-label).
        #[arg(long, requires_all = ["token_label", "key_label"])]
        pkcs11_module: Option<PathBuf>,
        #[arg(long)]
        token_label: Option<String>,
        #[arg(long)]
        key_label: Option<String>,
        /// Environment variable holding the token's user PIN.
        #[arg(long, default_value = "OTA_PKCS11_PIN")]
        pin_env: String,
        /// Where to write the signature.
        #[arg(long)]
        out: PathBuf,
        /// The tlog-proof of the certificate's issuance (`tlog_proof` of the update
        /// request); checked to be for --cert and written next to the signature, as
        /// `<out>.tlog-proof`, for devices that require the signer to be logged.
        #[arg(long)]
        proof: Option<PathBuf>,
        file: PathBuf,
    },
    /// Verify FILE against a detached CMS signature: chain to the update root only,
    /// EKU codeSigning, device class in scope, not revoked per the given CRLs, valid
    /// now (or at --at / the signing time), and with --log-key the signer logged.
    /// Prints `accepted: …` or fails `refused: …`.
    Verify {
        #[arg(long)]
        signature: PathBuf,
        /// Trust anchors (PEM); default: this CA's update root.
        #[arg(long)]
        trust: Option<PathBuf>,
        /// CRL (DER or PEM); repeat for several.
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Device class the update must be for (a name from [updates.classes]).
        #[arg(long)]
        class: Option<String>,
        /// Or the class's policy OID.
        #[arg(long)]
        class_oid: Option<String>,
        /// Check validity at this RFC 3339 time instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Check validity at the signature's signingTime (asserted by the signer).
        #[arg(long)]
        at_signing_time: bool,
        /// Require the signer certificate's issuance to be in the transparency log
        /// with this verifier key (`name+id+key`, or a file holding it; repeat for
        /// several): without a valid tlog-proof the update is refused.
        #[arg(long)]
        log_key: Vec<String>,
        /// The tlog-proof (default: `<signature>.tlog-proof`); used with --log-key.
        #[arg(long, requires = "log_key")]
        proof: Option<PathBuf>,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EstCommand {
    /// List requests awaiting a decision (`--all` for every status).
    Pending {
        #[arg(long)]
        all: bool,
    },
    /// Approve a request; the station's next retry of it gets the certificate.
    Approve { id: String },
    /// Reject a request; it can never be issued.
    Reject { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Register a batch from a CSV file: `device id, model, class, hardware serial`
    /// per line (model, class and hardware serial may be empty; a first line starting
    /// with `device_id` is a header). All rows are added or none.
    Import {
        #[arg(long)]
        batch: String,
        /// Model for rows that name none.
        #[arg(long)]
        model: Option<String>,
        /// Class for rows that name none.
        #[arg(long, default_value = "default")]
        class: String,
        /// Devices of this batch may be enrolled again while active (re-provisioning).
        #[arg(long)]
        allow_reprovision: bool,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StationsCommand {
    /// Register a station and issue its certificate (Station CA) from its CSR; the
    /// station's name is the CSR's CN.
    Add {
        #[arg(long)]
        csr: PathBuf,
        /// Models it may enroll (comma-separated, `*` = any).
        #[arg(long, default_value = "*")]
        models: String,
        /// Batches it may enroll (comma-separated, `*` = any).
        #[arg(long, default_value = "*")]
        batches: String,
        /// Write the certificate chain here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also create an HTTP credential (Basic/Bearer) for profiles that allow it;
        /// printed once, stored as an HMAC under the credential key.
        #[arg(long)]
        with_secret: bool,
    },
    /// List stations and their scope.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed ONCE on standard output and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        /// admin, operator, auditor or provisioning-station.
        #[arg(long)]
        role: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log: every entry against its leaf hash, the tree against every
    /// checkpoint signed for it (and `--checkpoint`), every record against its entry.
    /// Names the first bad entry.
    Verify {
        /// A signed checkpoint kept outside the database (`GET /log/checkpoint`, or a
        /// monitor's state file): the log must extend it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print the audit log's verifier key (`name+keyid+key`), what monitors and
    /// devices are configured with.
    Key,
    /// Sign a checkpoint for the log as it is now (if it grew) and print it.
    Checkpoint,
    /// Follow a log from anywhere, with no database: verify the newest checkpoint's
    /// signature, fetch the new entries and tiles, recompute the root, prove the log
    /// extends the checkpoint saved in STATE, then save the new one. A rewrite,
    /// truncation or fork exits non-zero and names the first bad entry.
    Monitor {
        /// Where the log is served, e.g. `http://pki.example.com:8080/log`.
        #[arg(long)]
        url: String,
        /// The log's verifier key (`ca-service log key`).
        #[arg(long)]
        key: String,
        /// The monitor's state (created on the first run).
        #[arg(long)]
        state: PathBuf,
        /// An API token (auditor role) for entry bundles that are not public.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// CA certificate(s), PEM, to verify an HTTPS URL's server with.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// List the CAs with subject and SHA-256 fingerprint.
    List,
    /// Write a CSR for a CA's key, to have it signed externally.
    Csr {
        #[arg(long)]
        ca: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Install an externally signed certificate for a CA (checked against its key),
    /// or for the key a `rollover --external` left waiting (`--ca device.2`).
    Import {
        #[arg(long)]
        ca: String,
        #[arg(long)]
        cert: PathBuf,
        /// A new key generation issues from then (RFC 3339 or 7d/12h/90m from now);
        /// default: at once.
        #[arg(long)]
        issues_from: Option<String>,
    },
    /// Give a CA a new key (same subject, new key identifier), certified by its
    /// parent; from `--at` every new and renewed certificate is issued under it and
    /// the old key is retired (it keeps signing its CRLs and OCSP answers). A root
    /// also gets the RFC 4210 link certificates. Restart the serving instances to load
    /// the new key before `--at`.
    Rollover {
        #[arg(long)]
        ca: String,
        /// When the new key takes over (RFC 3339 or 7d/12h/90m from now); default: at once.
        #[arg(long)]
        at: Option<String>,
        /// The parent signs offline: write a CSR for the new key instead.
        #[arg(long)]
        external: bool,
        /// Where to write the CSR (with --external); default stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Destroy a retired key generation (`device`, `device.2`) and its OCSP signer's
    /// key, once the last certificate it signed has expired.
    Destroy {
        #[arg(long)]
        ca: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RotationsCommand {
    /// The newest rotations, with their progress.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One rotation's progress and the devices that have not renewed yet.
    Show {
        id: i64,
        /// Devices listed at most.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// List pending devices with ids after this one.
        #[arg(long, default_value = "")]
        after: String,
    },
}
