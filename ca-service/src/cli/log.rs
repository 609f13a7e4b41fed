//! `ca-service log key | checkpoint | monitor`.

use std::path::Path;

use super::{Ctx, LogCommand};
use crate::transparency::TransparencyLog;

pub(super) async fn run(ctx: Ctx, command: LogCommand) -> anyhow::Result<()> {
    let log = TransparencyLog::open(&ctx.config, ctx.store.clone(), &ctx.keys).await?;
    match command {
        LogCommand::Key => println!("{}", log.verifier_key()),
        LogCommand::Checkpoint => {
            let size = crate::store::LogStore::log_size(ctx.store.as_ref()).await?;
            let cp = log.checkpoint_covering(i64::try_from(size)?, std::time::Duration::from_secs(10)).await?;
            print!("{}", cp.note);
        }
        LogCommand::Monitor { .. } => unreachable_monitor()?,
    }
    Ok(())
}

/// `log monitor` is dispatched before a context is opened (it needs none).
fn unreachable_monitor() -> anyhow::Result<()> {
    anyhow::bail!("log monitor runs without a configuration")
}

pub(super) async fn monitor(
    url: &str,
    key: &str,
    state: &Path,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> anyhow::Result<()> {
    crate::transparency::monitor::run(url, key, state, token_file, ca_file).await
}
