//! `ca-service init`: create the CA hierarchy (keys in the configured key stores);
//! refuses to overwrite an existing one. Also makes the credential key that API tokens
//! and station secrets are hashed with, if there is none yet.

use super::Ctx;
use crate::hierarchy;

pub(super) async fn run(ctx: Ctx) -> anyhow::Result<()> {
    // First: a key that cannot be written should not leave a hierarchy half set up.
    super::credential_key(&ctx.config)?;
    let cas = hierarchy::init(ctx.config, ctx.store, ctx.keys, &ctx.actor).await?;
    println!("Created the CA hierarchy:");
    for ca in cas {
        println!("{ca}");
    }
    Ok(())
}
