//! `ca-service init`: create the CA hierarchy (keys in the configured key stores);
//! refuses to overwrite an existing one. The ceremony ends by signing each offline
//! root's first CRL with its key (what `ca-service crl` renews), so that every CRL a
//! relying party needs, `/crl/{root}.crl` included, is published from the start. Also
//! makes the credential key that API tokens and station secrets are hashed with, if
//! there is none yet.

use super::Ctx;
use crate::hierarchy;
use crate::issuance::Pki;

pub(super) async fn run(ctx: Ctx) -> anyhow::Result<()> {
    // First: a key that cannot be written should not leave a hierarchy half set up.
    super::credential_key(&ctx.config)?;
    let Ctx { config, store, keys, actor, .. } = ctx;
    // A log key left from another hierarchy has signed another log: reusing it would
    // make two logs under one key, which monitors take for a fork.
    let (ks, label) = (config.log_key_store(), config.log.key_label.clone());
    if store.list_cas().await?.is_empty() && keys.find(&ks, &label).is_ok() {
        anyhow::bail!(
            "key store '{ks}' already holds an audit log key '{label}' (of another log); remove it, or set log.key_label"
        );
    }
    let cas = hierarchy::init(config.clone(), store.clone(), keys.clone(), &actor).await?;
    let verifier_key = crate::transparency::ensure_key(&config, store.as_ref(), &keys, &actor).await?;
    // The first checkpoint pins the log's origin (what monitors and devices check).
    let log = crate::transparency::TransparencyLog::open(&config, store.clone(), &keys).await?;
    crate::transparency::job::round(&log).await?;
    println!("Created the CA hierarchy:");
    for ca in cas {
        println!("{ca}");
    }
    println!("Created the audit log key; monitors and devices verify checkpoints with:\n  {verifier_key}");
    let pki = Pki::load(config, store, keys.clone()).await?;
    let roots: Vec<String> = pki.cas().filter(|c| c.issuer().is_none()).map(|c| c.record.name.clone()).collect();
    for root in roots {
        super::crl::sign_and_store(&pki, &keys, &root, super::crl::FIRST_ROOT_CRL_DAYS, &actor).await?;
        println!(
            "Signed the first CRL of {root} (valid {} days; renew it with `ca-service crl --ca {root}`)",
            super::crl::FIRST_ROOT_CRL_DAYS
        );
    }
    Ok(())
}
