//! `ca-service ca list|csr|import`: list the CAs; write a CSR for a CA's key to have it
//! signed externally; install the externally signed certificate.

use anyhow::Context;

use super::{ensure_hierarchy, write_out, CaCommand, Ctx};
use crate::hierarchy;

pub(super) async fn run(ctx: Ctx, command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::List => {
            ensure_hierarchy(ctx.store.as_ref()).await?;
            for ca in hierarchy::summaries(&ctx.store.list_cas().await?) {
                println!("{ca}");
            }
        }
        CaCommand::Csr { ca, out } => {
            let pem = hierarchy::ca_csr(&ctx.config, ctx.store.as_ref(), ctx.keys, &ca).await?;
            write_out(out.as_deref(), &pem)?;
        }
        CaCommand::Import { ca, cert } => {
            let bytes = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            let summary =
                hierarchy::ca_import(&ctx.config, ctx.store.as_ref(), ctx.keys, &ca, &bytes, &ctx.actor).await?;
            println!("Installed:\n{summary}");
        }
    }
    Ok(())
}
