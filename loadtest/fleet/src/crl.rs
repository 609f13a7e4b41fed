//! `fleet-load crl`: builds one CRL of a CA from the store and signs it with the
//! service's own code (`ca_service::crl::sign_crl`, what the publisher runs), in a
//! process of its own so that its memory is the CRL's: RSS is sampled every 2 ms
//! while it runs. Nothing is published (a CRL number is used up).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ca_service::config::Config;
use ca_service::crl::CrlRequest;
use ca_service::profile::CrlScope;

use crate::serve::Memory;

/// Signs the complete CRL of `ca` (or of one shard) and returns what it cost, as JSON.
pub async fn run(config: &Path, ca: &str, shard: Option<u32>) -> Result<serde_json::Value> {
    let config = Arc::new(Config::load(Some(config))?);
    let store = ca_service::store::open(&config.storage.url).await?;
    let keys = Arc::new(ca_service::keys::KeyStores::new(&config));
    let pki = ca_service::issuance::Pki::load(config, store, keys).await?;
    let signer = pki
        .ca(ca)
        .and_then(|c| c.issuer())
        .map(|i| i.key().signer().clone())
        .with_context(|| format!("no online CA '{ca}' whose key the service holds"))?;
    let scope = shard.map_or(CrlScope::Full, CrlScope::Shard);
    let before = Memory::own();
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(before.rss_kb)));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(Memory::own().rss_kb, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let started = Instant::now();
    let signed =
        ca_service::crl::sign_crl(&pki, ca, signer, Duration::from_secs(86_400), CrlRequest::Base(scope)).await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let crl = signed.map_err(|e| anyhow::anyhow!("signing the CRL: {e}"))?;
    let entries = {
        use x509_parser::prelude::FromDer;
        let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl.der)
            .map_err(|e| anyhow::anyhow!("the signed CRL does not parse: {e}"))?;
        parsed.iter_revoked_certificates().count()
    };
    let after = Memory::own();
    Ok(serde_json::json!({
        "ms": elapsed.as_secs_f64() * 1000.0,
        "entries": entries,
        "der_bytes": crl.der.len(),
        "rss_before_mb": before.rss_kb as f64 / 1024.0,
        "peak_rss_mb": peak.load(Ordering::Relaxed).max(after.rss_kb) as f64 / 1024.0,
        "hwm_mb": after.hwm_kb as f64 / 1024.0,
    }))
}
