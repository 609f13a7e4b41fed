//! `ca-service issue`: one certificate from a CSR (batch/offline issuance); prints the
//! PEM chain. Planned by the registration authority's operator stage (`Pki::issue`).

use std::path::Path;

use super::{ensure_hierarchy, read_csr, write_out, Ctx};
use crate::issuance::IssueRequest;

pub(super) async fn run(
    ctx: Ctx,
    profile: String,
    csr: &Path,
    device_id: Option<String>,
    model: Option<String>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    ensure_hierarchy(ctx.store.as_ref()).await?;
    let csr = read_csr(csr)?;
    let actor = ctx.actor.clone();
    let pki = ctx.pki().await?;
    let issued = pki.issue(IssueRequest { profile, csr, device_id, model, actor }).await?;
    write_out(out, &issued.chain_pem())?;
    eprintln!(
        "issued serial {} ({}), SHA-256 {}",
        hex::encode(&issued.record.serial),
        issued.record.subject,
        issued.record.fingerprint
    );
    Ok(())
}
