//! `ca-service stations add|list`: provisioning stations (EST simpleenroll clients).
//! `add` issues the station's certificate from its CSR (Station CA, planned by the
//! registration authority's operator stage) and then registers the station.

use std::path::Path;

use anyhow::{bail, Context};

use super::{ensure_hierarchy, profile_of_kind, read_csr, write_out, Ctx, StationsCommand};
use crate::audit::AuditEvent;
use crate::config::ProfileKind;
use crate::issuance::IssueRequest;
use crate::store::StationRecord;

pub(super) async fn run(ctx: Ctx, command: StationsCommand) -> anyhow::Result<()> {
    match command {
        StationsCommand::Add { csr, models, batches, out, with_secret } => {
            add(ctx, &csr, &models, &batches, out.as_deref(), with_secret).await
        }
        StationsCommand::List => list(&ctx).await,
    }
}

async fn add(
    ctx: Ctx,
    csr: &Path,
    models: &str,
    batches: &str,
    out: Option<&Path>,
    with_secret: bool,
) -> anyhow::Result<()> {
    ensure_hierarchy(ctx.store.as_ref()).await?;
    let checked = read_csr(csr)?;
    let name = checked.common_name.clone().context("the station CSR has no CN (the station's name)")?;
    let list = |s: &str| s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect();
    let secret = if with_secret {
        let key = super::credential_key(&ctx.config)?;
        Some(crate::credentials::new_secret(&key, crate::credentials::Subject::Station(&name)))
    } else {
        None
    };
    let station = StationRecord {
        name: name.clone(),
        enabled: true,
        models: list(models),
        batches: list(batches),
        secret_hash: secret.as_ref().map(|(_, phc)| phc.clone()),
    };
    if ctx.store.get_station(&name).await?.is_some() {
        bail!("station '{name}' already exists");
    }
    let actor = ctx.actor.clone();
    let pki = ctx.pki().await?;
    let profile = profile_of_kind(&pki.config, ProfileKind::Station)
        .map(|(n, _)| n.clone())
        .context("no station profile is configured")?;
    let issued =
        pki.issue(IssueRequest { profile, csr: checked, device_id: None, model: None, actor: actor.clone() }).await?;
    // Registered only once its certificate exists; a station row is what
    // authorizes enrollment.
    pki.store
        .add_station(
            &station,
            AuditEvent::success(&actor, "station.add", format!("station:{name}")).with_details(serde_json::json!({
                "models": station.models, "batches": station.batches,
                "certificate": hex::encode(&issued.record.serial) })),
        )
        .await?;
    write_out(out, &issued.chain_pem())?;
    eprintln!("station {name} registered; certificate serial {}", hex::encode(&issued.record.serial));
    if let Some((secret, _)) = &secret {
        // Shown once; only its HMAC under the credential key is stored.
        eprintln!(
            "station secret (shown once, store it now): {}\n  use: Authorization: Bearer {name}.{}  \
             or Basic with user '{name}'",
            secret.as_str(),
            secret.as_str()
        );
    }
    Ok(())
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    for st in ctx.store.list_stations().await? {
        println!(
            "{:<24} {:<8} models: {}  batches: {}",
            st.name,
            if st.enabled { "enabled" } else { "disabled" },
            st.models.join(","),
            st.batches.join(",")
        );
    }
    Ok(())
}
