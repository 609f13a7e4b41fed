//! `ca-service audit verify`: the log against its leaf hashes, every checkpoint signed
//! for it and optionally one kept elsewhere; names the first bad entry.

use anyhow::Context;

use super::{AuditCommand, Ctx};
use crate::transparency::verify::{open_checkpoint, stored_commitments, verify_against, Commitment};
use crate::transparency::TransparencyLog;

pub(super) async fn run(ctx: Ctx, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { checkpoint } = command;
    let log = TransparencyLog::open(&ctx.config, ctx.store.clone(), &ctx.keys)
        .await
        .context("the audit log key is needed to check the signed checkpoints")?;
    let verifier = tlog::Verifier::parse(log.verifier_key())?;
    let mut commitments = stored_commitments(ctx.store.as_ref(), &verifier, log.origin()).await?;
    let stored = commitments.len();
    if let Some(path) = &checkpoint {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let note = crate::transparency::monitor::note_from_file(&text);
        let cp = open_checkpoint(&note, &verifier, log.origin())
            .map_err(|e| anyhow::anyhow!("{}: not a checkpoint of this log: {e}", path.display()))?;
        commitments.push(Commitment {
            size: cp.size,
            root: cp.root,
            source: format!("the checkpoint in {}", path.display()),
        });
    }
    let report = verify_against(ctx.store.as_ref(), commitments).await?;
    println!(
        "audit log intact: {} entries, root {}; consistent with {stored} signed checkpoints{}; all {} certificates and \
         every CA have their entries",
        report.entries,
        hex::encode(report.root),
        checkpoint.map(|p| format!(" and {}", p.display())).unwrap_or_default(),
        report.certificates
    );
    Ok(())
}
