//! `ca-service ota sign|verify`: the reference signer and verifier for firmware
//! updates, on top of the `update_trust` library (which device and pipeline teams
//! embed directly). Here they run as CA tools: the trust anchor defaults to this
//! CA's update root, device classes are named as configured, and every outcome is
//! audited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::audit::AuditEvent;
use crate::config::Config;
use crate::store::Store;

/// `ota verify`'s refusal: the file must not be installed.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

/// Where `ota sign` finds the signing key.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// An unencrypted PKCS#8 PEM file (tests, small pipelines).
    File(PathBuf),
    /// A key in a PKCS#11 token; the PIN comes from an environment variable.
    Pkcs11 { module: PathBuf, token_label: String, key_label: String, pin_env: String },
}

/// What `ota verify` checks against.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    pub signature: PathBuf,
    pub file: PathBuf,
    /// PEM trust anchors; default: this CA's update root.
    pub trust: Option<PathBuf>,
    /// CRLs, DER or PEM.
    pub crls: Vec<PathBuf>,
    /// A configured device class name.
    pub class: Option<String>,
    /// Or its policy OID directly.
    pub class_oid: Option<String>,
    /// RFC 3339 time to check validity at (devices without a clock).
    pub at: Option<String>,
    pub at_signing_time: bool,
    /// Transparency-log verifier keys (or files holding one); when given, the signer
    /// must have a valid tlog-proof under one of them.
    pub log_keys: Vec<String>,
    /// The tlog-proof; default [`proof_path`] of the signature.
    pub proof: Option<PathBuf>,
}

/// Where the tlog-proof of a signature's signer is kept: `<signature>.tlog-proof`.
pub fn proof_path(signature: &Path) -> PathBuf {
    let mut name = signature.as_os_str().to_owned();
    name.push(".tlog-proof");
    PathBuf::from(name)
}

/// A log verifier key given as `name+id+key`, or as a file holding one.
fn log_verifier(arg: &str) -> anyhow::Result<update_trust::tlog::Verifier> {
    let path = Path::new(arg);
    let text = if !arg.contains('+') && path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        arg.to_string()
    };
    update_trust::tlog::Verifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--log-key '{arg}' is not a log verifier key: {e}"))
}

/// Reads and checks a tlog-proof for `cert_der`: it must parse and its entry must
/// be the certificate.issue entry of this certificate (the checkpoint signature is
/// the verifier's to check, with the log key it trusts).
fn checked_proof(path: &Path, cert_der: &[u8]) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let proof = update_trust::tlog::TlogProof::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a tlog-proof: {e}", path.display()))?;
    let entry: serde_json::Value = proof
        .extra
        .as_deref()
        .and_then(|x| serde_json::from_slice(x).ok())
        .with_context(|| format!("the tlog-proof {} carries no log entry", path.display()))?;
    let details: serde_json::Value = entry["details"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
        .context("the tlog-proof's entry has no JSON details")?;
    if entry["action"].as_str() != Some("certificate.issue")
        || details["fingerprint"].as_str() != Some(crate::issuance::sha256_hex(cert_der).as_str())
    {
        bail!("the tlog-proof {} is not of the issuance of --cert", path.display());
    }
    Ok(text)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Every DER block of a PEM file (or the file itself if it is DER).
fn der_blocks(bytes: &[u8], tag: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let blocks = pem::parse_many(bytes).context("malformed PEM")?;
    let found: Vec<Vec<u8>> = blocks.into_iter().filter(|b| b.tag() == tag).map(|b| b.into_contents()).collect();
    if found.is_empty() {
        bail!("no {tag} in the PEM file");
    }
    Ok(found)
}

/// The update root: the self-signed top of the update-signing profile's chain.
async fn update_root(config: &Config, store: &dyn Store) -> anyhow::Result<Vec<u8>> {
    let profile = config.profiles.get(&config.updates.profile).context("updates.profile names no profile")?;
    let mut name = profile.issuer.clone();
    loop {
        let ca = store.get_ca(&name).await?.with_context(|| format!("CA '{name}' is not in the hierarchy"))?;
        match ca.parent {
            Some(parent) => name = parent,
            None => return Ok(ca.cert_der),
        }
    }
}

fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at '{s}' is not an RFC 3339 time (e.g. 2027-01-31T12:00:00Z)"))?;
    Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap_or(0)))
}

/// Verifies; `Ok(Err(reason))` is a refusal (audited by the caller).
async fn check(
    config: &Config,
    store: &dyn Store,
    args: &VerifyArgs,
) -> anyhow::Result<Result<update_trust::Verified, String>> {
    let anchors = match &args.trust {
        Some(path) => der_blocks(&read(path)?, "CERTIFICATE")?,
        None => vec![update_root(config, store).await?],
    };
    let mut crls = Vec::new();
    for path in &args.crls {
        crls.extend(der_blocks(&read(path)?, "X509 CRL")?);
    }
    let device_class = match (&args.class, &args.class_oid) {
        (Some(_), Some(_)) => bail!("give --class or --class-oid, not both"),
        (Some(name), None) => Some(config.updates.class_oid(name).with_context(|| {
            let known = config.updates.classes.keys().cloned().collect::<Vec<_>>().join(", ");
            format!("unknown device class '{name}' (configured: {known})")
        })?),
        (None, Some(oid)) => Some(oid.parse().map_err(|_| anyhow::anyhow!("--class-oid '{oid}' is not an OID"))?),
        (None, None) => None,
    };
    let time = match (&args.at, args.at_signing_time) {
        (Some(_), true) => bail!("give --at or --at-signing-time, not both"),
        (Some(at), false) => update_trust::VerifyTime::At(parse_time(at)?),
        (None, true) => update_trust::VerifyTime::SigningTime,
        (None, false) => update_trust::VerifyTime::Now,
    };
    let verifiers = args.log_keys.iter().map(|k| log_verifier(k)).collect::<anyhow::Result<Vec<_>>>()?;
    let proof = if verifiers.is_empty() {
        None
    } else {
        let path = args.proof.clone().unwrap_or_else(|| proof_path(&args.signature));
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            // No proof: the verifier refuses, naming the rule.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    let signature = read(&args.signature)?;
    let content = std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let outcome = tokio::task::spawn_blocking(move || {
        let log = (!verifiers.is_empty()).then_some(update_trust::LogPolicy { verifiers: &verifiers });
        let policy = update_trust::Policy { trust_anchors: &anchors, crls: &crls, device_class, time, log };
        update_trust::verify_detached_logged(&signature, std::io::BufReader::new(content), proof.as_deref(), &policy)
            .map_err(|e| e.to_string())
    })
    .await
    .context("the verifier stopped")?;
    Ok(outcome)
}

/// `ca-service ota verify`: prints `accepted …` or fails with `refused: …`.
pub async fn verify(config: &Config, store: &dyn Store, actor: &str, args: &VerifyArgs) -> anyhow::Result<()> {
    let target = format!("file:{}", args.file.display());
    let outcome = match check(config, store, args).await {
        Ok(o) => o,
        // Unusable input (unreadable file, bad option) is refused and audited too.
        Err(e) => Err(format!("{e:#}")),
    };
    let event = match &outcome {
        Ok(v) => AuditEvent::success(actor, "ota.verify", target.as_str()).with_details(serde_json::json!({
            "signer": v.signer_subject, "serial": v.signer_serial_hex,
        })),
        Err(reason) => {
            AuditEvent::success(actor, "ota.verify", target.as_str()).with_outcome(format!("denied: {reason}"))
        }
    };
    store.append_audit(&[event]).await?;
    match outcome {
        Ok(v) => {
            let classes = v.device_classes.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ");
            println!(
                "accepted: signed by {} (serial {}), device classes {classes}",
                v.signer_subject, v.signer_serial_hex
            );
            Ok(())
        }
        Err(reason) => Err(Refused(reason).into()),
    }
}

/// The files of `ota sign`.
#[derive(Debug, Clone, Copy)]
pub struct SignPaths<'a> {
    pub cert: &'a Path,
    pub chain: Option<&'a Path>,
    /// The tlog-proof of the certificate's issuance, shipped as [`proof_path`].
    pub proof: Option<&'a Path>,
    pub file: &'a Path,
    pub out: &'a Path,
}

/// `ca-service ota sign`: writes a detached CMS signature (DER) over `file`, and the
/// signer's tlog-proof next to it if one is given.
pub async fn sign(store: &dyn Store, actor: &str, key: SigningKey, paths: &SignPaths<'_>) -> anyhow::Result<()> {
    let SignPaths { cert, chain, proof, file, out } = *paths;
    let cert_der = der_blocks(&read(cert)?, "CERTIFICATE")?.remove(0);
    let proof = proof.map(|p| checked_proof(p, &cert_der)).transpose()?;
    let chain_der = match chain {
        Some(p) => der_blocks(&read(p)?, "CERTIFICATE")?,
        None => Vec::new(),
    };
    let content = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let signature = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let signer: Arc<dyn hsm::Signer> = match key {
            SigningKey::File(path) => hsm::software::SoftwareSigner::from_pkcs8_pem_file(&path, "ota-signing-key")?,
            SigningKey::Pkcs11 { module, token_label, key_label, pin_env } => {
                let config = hsm::pkcs11::Pkcs11Config::new(module, token_label, hsm::SecretSource::Env(pin_env));
                hsm::KeyStore::find(&hsm::pkcs11::Pkcs11KeyStore::open(&config)?, &key_label)?
            }
        };
        let sig = update_trust::sign_detached(
            std::io::BufReader::new(content),
            signer.as_ref(),
            &cert_der,
            &chain_der,
            SystemTime::now(),
        )?;
        Ok(sig)
    })
    .await
    .context("the signer stopped")??;
    std::fs::write(out, &signature).with_context(|| format!("writing {}", out.display()))?;
    let proof_out = proof_path(out);
    if let Some(text) = &proof {
        std::fs::write(&proof_out, text).with_context(|| format!("writing {}", proof_out.display()))?;
    }
    let event =
        AuditEvent::success(actor, "ota.sign", format!("file:{}", file.display())).with_details(serde_json::json!({
            "signature": out.display().to_string(),
            "tlog_proof": proof.is_some().then(|| proof_out.display().to_string()),
        }));
    store.append_audit(&[event]).await?;
    eprintln!("signature written to {}", out.display());
    if proof.is_some() {
        eprintln!("tlog-proof written to {}", proof_out.display());
    }
    Ok(())
}
