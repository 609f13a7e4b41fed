//! `ca-service tokens create|list|revoke`: admin API tokens. A new token is printed
//! once; only its hash is stored.

use super::{Ctx, TokensCommand};
use crate::audit::AuditEvent;
use crate::store::Role;

pub(super) async fn run(ctx: Ctx, command: TokensCommand) -> anyhow::Result<()> {
    let (store, actor) = (ctx.store.as_ref(), ctx.actor.as_str());
    let now_us = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    };
    match command {
        TokensCommand::Create { name, role } => {
            let role = Role::parse(&role).map_err(|_| {
                anyhow::anyhow!(
                    "unknown role '{role}' (one of: {})",
                    Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            let (shown, token) = crate::admin::new_token(&name, role, now_us()).map_err(anyhow::Error::msg)?;
            let audit = AuditEvent::success(actor, "token.create", format!("token:{}", token.id))
                .with_details(serde_json::json!({ "name": name, "role": role.as_str() }));
            store.add_api_token(&token, audit).await?;
            eprintln!(
                "API token {} ({role}) created. It is shown only once: store it now (only its hash is kept).",
                token.id
            );
            println!("{}", shown.as_str());
        }
        TokensCommand::List => {
            for t in store.list_api_tokens().await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  {:<22} {:<8} {}", t.id, t.role.as_str(), state, t.name);
            }
        }
        TokensCommand::Revoke { id } => {
            let audit = AuditEvent::success(actor, "token.revoke", format!("token:{id}"));
            store.revoke_api_token(&id, now_us(), audit).await?;
            println!("revoked API token {id}");
        }
    }
    Ok(())
}
