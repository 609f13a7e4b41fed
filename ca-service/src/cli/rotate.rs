//! `ca-service rotate` and `ca-service rotations`: through [`crate::rotation`], like the
//! admin API. The deadline is acted on by the serving instances' deadline job.

use anyhow::Context as _;

use super::{Ctx, RotationsCommand};
use crate::rotation::{self, Request};

pub(super) async fn create(ctx: Ctx, request: Request) -> anyhow::Result<()> {
    let now = crate::issuance::unix(std::time::SystemTime::now());
    let order = match request.check(now) {
        Ok(order) => order,
        Err(why) => {
            refused(&ctx, &why).await;
            anyhow::bail!(why);
        }
    };
    let r = match rotation::create(ctx.store.as_ref(), order, &ctx.actor, None).await {
        Ok(r) => r,
        Err(e) => {
            refused(&ctx, &e.to_string()).await;
            return Err(e).context("recording the rotation");
        }
    };
    let progress = ctx.store.rotation_progress(&r).await?;
    println!("{}", serde_json::to_string_pretty(&rotation::json(&r, Some(progress)))?);
    Ok(())
}

/// A refused rotation is audited as the API's are.
async fn refused(ctx: &Ctx, why: &str) {
    let event = crate::audit::AuditEvent::success(&ctx.actor, rotation::CREATE_ACTION, "rotation:new")
        .with_outcome(format!("denied: {why}"));
    if let Err(e) = ctx.store.append_audit(&[event]).await {
        eprintln!("warning: could not audit the refusal: {e}");
    }
}

pub(super) async fn rotations(ctx: Ctx, command: RotationsCommand) -> anyhow::Result<()> {
    match command {
        RotationsCommand::List { limit } => {
            let mut out = Vec::new();
            for r in ctx.store.list_rotations(limit.clamp(1, 1000)).await? {
                let progress = ctx.store.rotation_progress(&r).await?;
                out.push(rotation::json(&r, Some(progress)));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        RotationsCommand::Show { id, limit, after } => {
            let r = ctx.store.get_rotation(id).await?.with_context(|| format!("no rotation {id}"))?;
            let progress = ctx.store.rotation_progress(&r).await?;
            let mut v = rotation::json(&r, Some(progress));
            v["pending_devices"] = ctx.store.rotation_pending(&r, &after, limit.clamp(1, 10_000)).await?.into();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
