//! The `ca-service` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::audit;
use crate::config::{Config, KeyStoreConfig};
use crate::hierarchy;
use crate::issuance::{IssueRequest, Pki};
use crate::keys::KeyStores;
use crate::store::{self, Store};

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
        file: PathBuf,
    },
    /// Verify FILE against a detached CMS signature: chain to the update root only,
    /// EKU codeSigning, device class in scope, not revoked per the given CRLs, valid
    /// now (or at --at / the signing time). Prints `accepted: …` or fails `refused: …`.
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
        /// printed once, stored as an Argon2id hash.
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
    /// Walk the hash chain and name the first broken entry.
    Verify,
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
    /// Install an externally signed certificate for a CA (checked against its key).
    Import {
        #[arg(long)]
        ca: String,
        #[arg(long)]
        cert: PathBuf,
    },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let evaluation = cli.config.is_none();
    let config = Arc::new(Config::load(cli.config.as_deref())?);
    // Commands print their results; only the server narrates what it does.
    let level = if matches!(cli.command, Command::Serve) { "info" } else { "warn" };
    crate::init_logging(&config.server.log_format, level);
    if evaluation && matches!(cli.command, Command::Init | Command::Serve) {
        prepare_evaluation_secret(&config)?;
    }
    let store = store::open(&config.storage.url)
        .await
        .with_context(|| format!("opening storage {}", store::redact_url(&config.storage.url)))?;
    let keys = Arc::new(KeyStores::new(&config));
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));

    match cli.command {
        Command::Init => {
            let cas = hierarchy::init(config, store, keys, &actor).await?;
            println!("Created the CA hierarchy:");
            for ca in cas {
                println!("{ca}");
            }
        }
        Command::Serve => {
            if store.list_cas().await?.is_empty() {
                if !evaluation {
                    return Err(hierarchy::HierarchyError::Missing.into());
                }
                eprintln!("No CA hierarchy yet: creating the default one (evaluation mode).");
                for ca in hierarchy::init(config.clone(), store.clone(), keys.clone(), "system:first-start").await? {
                    eprintln!("{ca}");
                }
            }
            let pki = Arc::new(Pki::load(config, store, keys).await?);
            crate::server::serve(pki).await?;
        }
        Command::Issue { profile, csr, device_id, model, out } => {
            ensure_hierarchy(store.as_ref()).await?;
            let bytes = std::fs::read(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let csr = enrollment::check_csr(&bytes).with_context(|| format!("{}", csr.display()))?;
            let pki = Pki::load(config, store, keys).await?;
            let issued = pki.issue(IssueRequest { profile, csr, device_id, model, actor }).await?;
            write_out(out.as_deref(), &issued.chain_pem())?;
            eprintln!(
                "issued serial {} ({}), SHA-256 {}",
                hex::encode(&issued.record.serial),
                issued.record.subject,
                issued.record.fingerprint
            );
        }
        Command::Audit { command: AuditCommand::Verify } => verify_audit(store.as_ref()).await?,
        Command::Revoke { issuer, serial, device, batch, model, reason } => {
            let code = crate::crl::reason_code(&reason).map_err(anyhow::Error::msg)?;
            let now = crate::issuance::unix(std::time::SystemTime::now());
            let details = serde_json::json!({ "reason": reason, "reason_code": code.code() });
            let which = match (device, batch, model) {
                (Some(d), _, _) => Some(crate::store::DeviceSelector::Device(d)),
                (_, Some(b), _) => Some(crate::store::DeviceSelector::Batch(b)),
                (_, _, Some(m)) => Some(crate::store::DeviceSelector::Model(m)),
                _ => None,
            };
            if let Some(which) = which {
                let audit =
                    crate::audit::AuditEvent::success(&actor, "device.revoke", which.to_string()).with_details(details);
                let (devices, revoked) = store.revoke_devices(&which, code, now, audit).await?;
                println!("revoked {which}: {devices} device(s), {} certificate(s), reason {reason}", revoked.len());
                for c in revoked {
                    println!("  {}/{}", c.issuer, hex::encode(&c.serial));
                }
            } else if let (Some(issuer), Some(serial)) = (issuer, serial) {
                let serial_bytes = crate::crl::parse_serial(&serial).map_err(anyhow::Error::msg)?;
                let target = format!("certificate:{issuer}/{}", hex::encode(&serial_bytes));
                let audit =
                    crate::audit::AuditEvent::success(&actor, "certificate.revoke", target).with_details(details);
                let record = store.revoke_certificate(&issuer, &serial_bytes, code, now, audit).await?;
                println!("revoked {issuer}/{} ({}), reason {reason}", hex::encode(&record.serial), record.subject);
            } else {
                bail!("give --issuer and --serial, or --device, --batch or --model");
            }
        }
        Command::Devices { command: DevicesCommand::Import { batch, model, class, allow_reprovision, file } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let devices = parse_devices(&text, &batch, model.as_deref(), &class, allow_reprovision, &config)
                .with_context(|| format!("{}", file.display()))?;
            let audit = crate::audit::AuditEvent::success(&actor, "device.register", format!("batch:{batch}"))
                .with_details(serde_json::json!({ "devices": devices.len(), "reprovision": allow_reprovision }));
            store.add_devices(&devices, audit).await?;
            println!("registered {} devices in batch {batch}", devices.len());
        }
        Command::Stations { command: StationsCommand::Add { csr, models, batches, out, with_secret } } => {
            ensure_hierarchy(store.as_ref()).await?;
            let bytes = std::fs::read(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let checked = enrollment::check_csr(&bytes).with_context(|| format!("{}", csr.display()))?;
            let name = checked.common_name.clone().context("the station CSR has no CN (the station's name)")?;
            let list = |s: &str| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect();
            let secret =
                if with_secret { Some(crate::credentials::new_secret().map_err(anyhow::Error::msg)?) } else { None };
            let station = crate::store::StationRecord {
                name: name.clone(),
                enabled: true,
                models: list(&models),
                batches: list(&batches),
                secret_hash: secret.as_ref().map(|(_, phc)| phc.clone()),
            };
            if store.get_station(&name).await?.is_some() {
                bail!("station '{name}' already exists");
            }
            let pki = Pki::load(config, store, keys).await?;
            let profile = pki
                .config
                .profiles
                .iter()
                .find(|(_, p)| p.kind == crate::config::ProfileKind::Station)
                .map(|(n, _)| n.clone())
                .context("no station profile is configured")?;
            let issued = pki
                .issue(IssueRequest { profile, csr: checked, device_id: None, model: None, actor: actor.clone() })
                .await?;
            // Registered only once its certificate exists; a station row is what
            // authorizes enrollment.
            pki.store
                .add_station(
                    &station,
                    crate::audit::AuditEvent::success(&actor, "station.add", format!("station:{name}"))
                        .with_details(serde_json::json!({ "models": station.models, "batches": station.batches,
                                            "certificate": hex::encode(&issued.record.serial) })),
                )
                .await?;
            write_out(out.as_deref(), &issued.chain_pem())?;
            eprintln!("station {name} registered; certificate serial {}", hex::encode(&issued.record.serial));
            if let Some((secret, _)) = &secret {
                // Shown once; only its Argon2id hash is stored.
                eprintln!(
                    "station secret (shown once, store it now): {}\n  use: Authorization: Bearer {name}.{}  \
                     or Basic with user '{name}'",
                    secret.as_str(),
                    secret.as_str()
                );
            }
        }
        Command::Est { command: EstCommand::Pending { all } } => {
            let status = if all { None } else { Some(crate::store::RequestStatus::Pending) };
            for r in store.list_enrollment_requests(status).await? {
                println!(
                    "{}  {:<9} device {:<20} profile {:<12} from {}",
                    r.id,
                    r.status.as_str(),
                    r.device_id,
                    r.profile,
                    r.requester
                );
            }
        }
        Command::Est { command: EstCommand::Approve { id } | EstCommand::Reject { id } } if id.is_empty() => {
            bail!("empty request id");
        }
        Command::Est { command } => {
            let (id, approve) = match command {
                EstCommand::Approve { id } => (id, true),
                EstCommand::Reject { id } => (id, false),
                EstCommand::Pending { .. } => unreachable_pending()?,
            };
            let action = if approve { "est.approve" } else { "est.reject" };
            let audit = crate::audit::AuditEvent::success(&actor, action, format!("request:{id}"));
            store.decide_enrollment_request(&id, approve, &actor, audit).await?;
            println!("request {id} {}", if approve { "approved" } else { "rejected" });
        }
        Command::Stations { command: StationsCommand::List } => {
            for st in store.list_stations().await? {
                println!(
                    "{:<24} {:<8} models: {}  batches: {}",
                    st.name,
                    if st.enabled { "enabled" } else { "disabled" },
                    st.models.join(","),
                    st.batches.join(",")
                );
            }
        }
        Command::Tokens { command } => tokens(store.as_ref(), command, &actor).await?,
        Command::Operators { command: OperatorsCommand::Add { csr, role, out } } => {
            ensure_hierarchy(store.as_ref()).await?;
            let parsed = store::Role::parse(&role).ok().filter(|r| *r != store::Role::ProvisioningStation);
            let Some(role) = parsed else {
                bail!("unknown role '{role}' (admin, operator, auditor, release-manager, update-approver)");
            };
            let bytes = std::fs::read(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let checked = enrollment::check_csr(&bytes).with_context(|| format!("{}", csr.display()))?;
            let name = checked.common_name.clone().context("the CSR has no CN (the person's name)")?;
            let pki = Pki::load(config, store, keys).await?;
            let (profile_name, profile) = pki
                .config
                .profiles
                .iter()
                .find(|(_, p)| p.kind == crate::config::ProfileKind::Operator)
                .context("no operator profile is configured")?;
            crate::issuance::check_policy(profile_name, profile, &checked)?;
            let subject = crate::profile::Subject::Operator { name: name.clone(), role: role.as_str().to_string() };
            let issued =
                pki.issue_checked(profile_name, profile, subject, &checked.public_key_der, &actor, None).await?;
            write_out(out.as_deref(), &issued.chain_pem())?;
            eprintln!(
                "operator {name} ({role}) certificate issued: serial {} by {}",
                hex::encode(&issued.record.serial),
                issued.record.issuer
            );
        }
        Command::Ota {
            command: OtaCommand::Verify { signature, trust, crl, class, class_oid, at, at_signing_time, file },
        } => {
            let args =
                crate::ota::VerifyArgs { signature, file, trust, crls: crl, class, class_oid, at, at_signing_time };
            crate::ota::verify(&config, store.as_ref(), &actor, &args).await?;
        }
        Command::Ota {
            command:
                OtaCommand::Sign { cert, chain, key_file, pkcs11_module, token_label, key_label, pin_env, out, file },
        } => {
            let key = match (key_file, pkcs11_module, token_label, key_label) {
                (Some(path), None, _, _) => crate::ota::SigningKey::File(path),
                (None, Some(module), Some(token_label), Some(key_label)) => {
                    crate::ota::SigningKey::Pkcs11 { module, token_label, key_label, pin_env }
                }
                _ => bail!("give --key-file, or --pkcs11-module with --token-label and --key-label"),
            };
            crate::ota::sign(store.as_ref(), &actor, key, &cert, chain.as_deref(), &file, &out).await?;
        }
        Command::Crl { ca, days, out, pem } => {
            ensure_hierarchy(store.as_ref()).await?;
            let record = store.get_ca(&ca).await?.with_context(|| format!("no CA named '{ca}'"))?;
            let (key_store, label, finder) = (record.key_store.clone(), record.key_label.clone(), keys.clone());
            let signer = tokio::task::spawn_blocking(move || finder.find(&key_store, &label))
                .await
                .context("loading the CA key")??;
            let (_, cert) = x509_parser::parse_x509_certificate(&record.cert_der).context("the CA certificate")?;
            if signer.public_key_der() != cert.public_key().raw {
                bail!("the key {}:{} does not match CA '{ca}''s certificate", record.key_store, record.key_label);
            }
            let pki = Pki::load(config, store, keys).await?;
            let validity = std::time::Duration::from_secs(u64::from(days) * 86_400);
            let request = crate::crl::CrlRequest::Base(crate::profile::CrlScope::Full);
            let crl =
                crate::crl::sign_crl(&pki, &ca, signer, validity, request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let der = crl.der.clone();
            let audit = crate::audit::AuditEvent::success(&actor, "crl.sign", format!("ca:{ca}")).with_details(
                serde_json::json!({ "days": days, "crl_number": crl.number, "sha256": crate::issuance::sha256_hex(&der) }),
            );
            // Stored for the service to publish at /crl/{ca}.crl.
            pki.store.publish_crls(&[crl], audit).await?;
            if let Some(out) = out {
                let bytes = if pem { pem::encode(&pem::Pem::new("X509 CRL", der)).into_bytes() } else { der };
                std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
                eprintln!("CRL of {ca} written to {}", out.display());
            }
            eprintln!("CRL of {ca} signed (valid {days} days) and published at /crl/{ca}.crl");
        }
        Command::Ca { command } => match command {
            CaCommand::List => {
                ensure_hierarchy(store.as_ref()).await?;
                for ca in hierarchy::summaries(&store.list_cas().await?) {
                    println!("{ca}");
                }
            }
            CaCommand::Csr { ca, out } => {
                let pem = hierarchy::ca_csr(&config, store.as_ref(), keys, &ca).await?;
                write_out(out.as_deref(), &pem)?;
            }
            CaCommand::Import { ca, cert } => {
                let bytes = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
                let summary = hierarchy::ca_import(&config, store.as_ref(), keys, &ca, &bytes, &actor).await?;
                println!("Installed:\n{summary}");
            }
        },
    }
    Ok(())
}

async fn tokens(store: &dyn Store, command: TokensCommand, actor: &str) -> anyhow::Result<()> {
    let now_us = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    };
    match command {
        TokensCommand::Create { name, role } => {
            let role = store::Role::parse(&role).map_err(|_| {
                anyhow::anyhow!(
                    "unknown role '{role}' (one of: {})",
                    store::Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            let (shown, token) = crate::admin::new_token(&name, role, now_us()).map_err(anyhow::Error::msg)?;
            let audit = audit::AuditEvent::success(actor, "token.create", format!("token:{}", token.id))
                .with_details(serde_json::json!({ "name": name, "role": role.as_str() }));
            store.add_api_token(&token, audit).await?;
            eprintln!(
                "API token {} ({role}) created. It is shown only once: store it now (only its hash is kept).",
                token.id
            );
            println!("{}", shown.as_str());
        }
        TokensCommand::List => {
            for t in store.list_api_tokens().await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  {:<22} {:<8} {}", t.id, t.role.as_str(), state, t.name);
            }
        }
        TokensCommand::Revoke { id } => {
            let audit = audit::AuditEvent::success(actor, "token.revoke", format!("token:{id}"));
            store.revoke_api_token(&id, now_us(), audit).await?;
            println!("revoked API token {id}");
        }
    }
    Ok(())
}

/// `est pending` is matched before the decision arm; reaching it is a bug, reported
/// as an error rather than a panic.
fn unreachable_pending() -> anyhow::Result<(String, bool)> {
    bail!("internal: `est pending` dispatched as a decision")
}

/// Parses a device CSV (see `devices import`).
fn parse_devices(
    text: &str,
    batch: &str,
    default_model: Option<&str>,
    default_class: &str,
    reprovision: bool,
    config: &Config,
) -> anyhow::Result<Vec<crate::store::DeviceRecord>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("device_id")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = || format!("line {}", n + 1);
        if fields.len() > 4 {
            bail!("{}: expected at most 4 fields (device id, model, class, hardware serial)", at());
        }
        let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
        let id = field(0).with_context(|| format!("{}: empty device id", at()))?;
        crate::profile::validate_device_id(id).with_context(at)?;
        let model = field(1).or(default_model).with_context(|| format!("{}: no model (give --model)", at()))?;
        if !config.models.contains_key(model) {
            bail!("{}: model '{model}' is not configured ([models] in the config)", at());
        }
        if !seen.insert(id.to_string()) {
            bail!("{}: device '{id}' appears twice", at());
        }
        out.push(crate::store::DeviceRecord {
            device_id: id.to_string(),
            model: model.to_string(),
            class: field(2).unwrap_or(default_class).to_string(),
            batch: batch.to_string(),
            hardware_serial: field(3).map(str::to_string),
            state: crate::store::DeviceState::Expected,
            reprovision,
        });
    }
    if out.is_empty() {
        bail!("no devices in the file");
    }
    Ok(out)
}

async fn ensure_hierarchy(store: &dyn Store) -> anyhow::Result<()> {
    if store.list_cas().await?.is_empty() {
        return Err(hierarchy::HierarchyError::Missing.into());
    }
    Ok(())
}

async fn verify_audit(store: &dyn Store) -> anyhow::Result<()> {
    let report = audit::verify_store(store).await?;
    println!(
        "audit log intact: {} entries, head {}; all {} certificates and every CA have their entries",
        report.entries,
        hex::encode(report.head),
        report.certificates
    );
    Ok(())
}

fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => std::io::stdout().write_all(text.as_bytes()).context("writing to standard output"),
    }
}

/// In evaluation mode (no config file) the software key store's passphrase is
/// generated on first use into a 0600 file. Anyone who can read that file can use
/// the CA keys: fine for trying the service, not for production.
fn prepare_evaluation_secret(config: &Config) -> anyhow::Result<()> {
    for ks in config.key_stores.values() {
        let KeyStoreConfig::Software { dir, passphrase_file: Some(path), passphrase_env: None, key_file: None } = ks
        else {
            continue;
        };
        // Never invent a passphrase for a store that already holds keys: that would
        // only hide the real problem (the passphrase file went missing).
        if path.exists() || dir.join("keystore.json").exists() {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let secret = zeroize::Zeroizing::new(hex::encode(rand::random::<[u8; 32]>()));
        write_private_file(path, secret.as_bytes())?;
        eprintln!(
            "WARNING: evaluation mode. Generated the key-store passphrase into {} (mode 0600).\n\
             Anyone who can read it can use the CA keys. For production use a config file\n\
             with PKCS#11 or a passphrase from the environment (see README).",
            path.display()
        );
    }
    Ok(())
}

fn write_private_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
    if std::fs::metadata(path)?.len() != data.len() as u64 {
        bail!("short write to {}", path.display());
    }
    Ok(())
}
