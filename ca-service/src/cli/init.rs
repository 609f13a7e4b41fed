//! `ca-service init`: create the CA hierarchy (keys in the configured key stores);
//! refuses to overwrite an existing one.

use super::Ctx;
use crate::hierarchy;

pub(super) async fn run(ctx: Ctx) -> anyhow::Result<()> {
    let cas = hierarchy::init(ctx.config, ctx.store, ctx.keys, &ctx.actor).await?;
    println!("Created the CA hierarchy:");
    for ca in cas {
        println!("{ca}");
    }
    Ok(())
}
