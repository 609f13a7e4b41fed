//! `ca-service crl`: sign a CRL with the CA's own key — the ceremony for roots, whose
//! keys the service never loads (it publishes the issuing CAs' CRLs itself). The CRL is
//! stored for the service to publish at `/crl/{ca}.crl`, and optionally written out.
//! `ca-service init` signs the roots' first CRLs the same way ([`sign_and_store`]).

use std::path::Path;

use anyhow::{bail, Context};

use super::{ensure_hierarchy, Ctx};
use crate::issuance::Pki;
use crate::keys::KeyStores;

/// How long the roots' first CRLs (signed by `init`) are valid, days; the default of
/// `ca-service crl --days`.
pub(super) const FIRST_ROOT_CRL_DAYS: u32 = 30;

pub(super) async fn run(ctx: Ctx, ca: &str, days: u32, out: Option<&Path>, pem: bool) -> anyhow::Result<()> {
    let Ctx { config, store, keys, actor, .. } = ctx;
    ensure_hierarchy(store.as_ref()).await?;
    let pki = Pki::load(config, store, keys.clone()).await?;
    let der = sign_and_store(&pki, &keys, ca, days, &actor).await?;
    if let Some(out) = out {
        let bytes = if pem { pem::encode(&pem::Pem::new("X509 CRL", der)).into_bytes() } else { der };
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("CRL of {ca} written to {}", out.display());
    }
    eprintln!("CRL of {ca} signed (valid {days} days) and published at /crl/{ca}.crl");
    Ok(())
}

/// Signs the complete CRL of `ca` with its own key (found in its key store and
/// checked against its certificate), valid `days`, and stores it for publishing,
/// audited as `crl.sign` by `actor`. Returns the DER.
pub(super) async fn sign_and_store(
    pki: &Pki,
    keys: &std::sync::Arc<KeyStores>,
    ca: &str,
    days: u32,
    actor: &str,
) -> anyhow::Result<Vec<u8>> {
    let record = pki.store.get_ca(ca).await?.with_context(|| format!("no CA named '{ca}'"))?;
    let (key_store, label, finder) = (record.key_store.clone(), record.key_label.clone(), keys.clone());
    let signer =
        tokio::task::spawn_blocking(move || finder.find(&key_store, &label)).await.context("loading the CA key")??;
    let (_, cert) = x509_parser::parse_x509_certificate(&record.cert_der).context("the CA certificate")?;
    if signer.public_key_der() != cert.public_key().raw {
        bail!("the key {}:{} does not match CA '{ca}''s certificate", record.key_store, record.key_label);
    }
    let validity = std::time::Duration::from_secs(u64::from(days) * 86_400);
    let request = crate::crl::CrlRequest::Base(crate::profile::CrlScope::Full);
    let crl = crate::crl::sign_crl(pki, ca, signer, validity, request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let der = crl.der.clone();
    let audit = crate::audit::AuditEvent::success(actor, "crl.sign", format!("ca:{ca}")).with_details(
        serde_json::json!({ "days": days, "crl_number": crl.number, "sha256": crate::issuance::sha256_hex(&der) }),
    );
    // Stored for the service to publish at /crl/{ca}.crl.
    pki.store.publish_crls(&[crl], audit).await?;
    Ok(der)
}
