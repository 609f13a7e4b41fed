//! `ca-service audit verify`: walk the audit log's hash chain and name the first
//! broken entry.

use super::{AuditCommand, Ctx};

pub(super) async fn run(ctx: Ctx, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify = command;
    let report = crate::audit::verify_store(ctx.store.as_ref()).await?;
    println!(
        "audit log intact: {} entries, head {}; all {} certificates and every CA have their entries",
        report.entries,
        hex::encode(report.head),
        report.certificates
    );
    Ok(())
}
