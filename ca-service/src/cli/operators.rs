//! `ca-service operators add`: an operator certificate from the person's CSR (their key
//! stays with them): CN = their name, OU = the role. The admin API accepts it instead
//! of a token; `ca-service revoke` withdraws it.

use std::path::Path;

use anyhow::{bail, Context};

use super::{ensure_hierarchy, profile_of_kind, read_csr, write_out, Ctx, OperatorsCommand};
use crate::config::ProfileKind;
use crate::store::Role;

pub(super) async fn run(ctx: Ctx, command: OperatorsCommand) -> anyhow::Result<()> {
    let OperatorsCommand::Add { csr, role, out } = command;
    add(ctx, &csr, &role, out.as_deref()).await
}

async fn add(ctx: Ctx, csr: &Path, role: &str, out: Option<&Path>) -> anyhow::Result<()> {
    ensure_hierarchy(ctx.store.as_ref()).await?;
    let Some(role) = Role::parse(role).ok().filter(|r| *r != Role::ProvisioningStation) else {
        bail!("unknown role '{role}' (admin, operator, auditor, release-manager, update-approver)");
    };
    let checked = read_csr(csr)?;
    let name = checked.common_name.clone().context("the CSR has no CN (the person's name)")?;
    let actor = ctx.actor.clone();
    let pki = ctx.pki().await?;
    let (profile_name, profile) =
        profile_of_kind(&pki.config, ProfileKind::Operator).context("no operator profile is configured")?;
    crate::issuance::check_policy(profile_name, profile, &checked)?;
    let subject = crate::profile::Subject::Operator { name: name.clone(), role: role.as_str().to_string() };
    let issued = pki.issue_checked(profile_name, profile, subject, &checked.public_key_der, &actor, None).await?;
    write_out(out, &issued.chain_pem())?;
    eprintln!(
        "operator {name} ({role}) certificate issued: serial {} by {}",
        hex::encode(&issued.record.serial),
        issued.record.issuer
    );
    Ok(())
}
