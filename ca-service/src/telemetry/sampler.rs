//! The gauges about stored state, read periodically rather than per scrape: a scrape
//! costs one render of what is in memory, whatever the fleet's size.
//!
//! Every `metrics.sample_secs`: the pools (database, HSM sessions), the audit log's
//! head, the published CRLs' numbers and times (every instance reports them, not only
//! the one that signs), the CAs' expiry, and CA keys stored since this process
//! started (a rollover it has not loaded). Every `metrics.count_secs`: certificates by
//! issuer, profile and state, one grouped read of an index; and the progress of the open
//! rotations (newest 100).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::issuance::{unix, Pki};
use crate::store::{CrlStore, LogStore, Readiness, ReportStore, RotationStore};

/// Starts the sampler on the current runtime.
pub fn spawn(pki: Arc<Pki>) {
    let cfg = &pki.config.metrics;
    let (every, count_every) =
        (Duration::from_secs(cfg.sample_secs.max(1)), Duration::from_secs(cfg.count_secs.max(1)));
    super::crl_period("delta", pki.config.crl.regenerate_secs);
    super::crl_period("full", pki.config.crl.base_regenerate_secs.unwrap_or(pki.config.crl.regenerate_secs));
    // Per CA, its newest key: a retired key expiring after a rollover is expected (its
    // certificates cannot outlive it), the CA expiring is not.
    for ca in pki.cas().filter(|c| pki.generations(&c.ca).first().is_some_and(|n| Arc::ptr_eq(n, c))) {
        super::not_after(super::Expiry::Ca(&ca.record.name), unix(ca.not_after));
    }
    tokio::spawn(async move {
        let mut counted: Option<Instant> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let count = counted.is_none_or(|t| t.elapsed() >= count_every);
            match sample(&pki, count).await {
                Ok(()) => {
                    if count {
                        counted = Some(Instant::now());
                    }
                    metrics::gauge!("devicepki_sampler_last_run_timestamp_seconds").set(unix(SystemTime::now()) as f64);
                }
                Err(e) => {
                    super::store_error(&e);
                    tracing::warn!(error = %e, "reading the state for metrics failed");
                }
            }
            super::upkeep();
        }
    });
}

/// The CA keys the store holds (a rollover's new generation) or has destroyed since
/// this process loaded the hierarchy: until it restarts, it does not issue under them.
pub async fn restart_needed(pki: &Pki) -> Result<Vec<String>, crate::store::StoreError> {
    Ok(pki
        .store
        .list_cas()
        .await?
        .into_iter()
        .filter(|r| pki.ca(&r.name).is_none_or(|c| c.record.destroyed_at != r.destroyed_at))
        .map(|r| r.name)
        .collect())
}

/// One round: everything but the counts, and the counts when `count`.
pub async fn sample(pki: &Pki, count: bool) -> Result<(), crate::store::StoreError> {
    let readiness: &dyn Readiness = pki.store.as_ref();
    if let Some(pool) = readiness.pool() {
        super::store_pool(pool);
    }
    for (name, store) in pki.keys.opened() {
        if let Some(usage) = store.sessions() {
            super::hsm_sessions(&name, usage);
        }
    }
    super::restart_needed(&restart_needed(pki).await?);
    let log: &dyn LogStore = pki.store.as_ref();
    let size = log.log_size().await?;
    let checkpoint = log.latest_checkpoint().await?.map(|c| (c.size, c.signed_at));
    super::log_head(size, checkpoint);
    let crls: &dyn CrlStore = pki.store.as_ref();
    for (ca, name) in crate::crl::published_names(pki) {
        if let Some(head) = crls.published_crl_head(&ca, &name).await? {
            super::crl_published(&ca, &name, head.number, head.this_update, head.next_update);
        }
    }
    if count {
        let reports: &dyn ReportStore = pki.store.as_ref();
        let t = Instant::now();
        let counts = reports.certificate_counts(unix(SystemTime::now())).await?;
        super::store_transaction("certificate_counts", t.elapsed());
        super::certificate_counts(&counts);
        let rotations: &dyn RotationStore = pki.store.as_ref();
        let mut open = Vec::new();
        for r in rotations.list_rotations(100).await?.into_iter().filter(|r| r.closed_at.is_none()) {
            open.push((r.id, rotations.rotation_progress(&r).await?));
        }
        super::rotation_progress(&open);
    }
    Ok(())
}
