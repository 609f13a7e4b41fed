//! `ca-service tokens create|list|revoke`: admin API tokens. A new token is printed
//! once; only its HMAC under the credential key is stored (`crate::credentials`).

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
            let key = super::credential_key(&ctx.config)?;
            let (shown, token) = crate::admin::new_token(&key, &name, role, now_us());
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
                let state = match (t.revoked_at, t.secret_hash.starts_with("$argon2")) {
                    (Some(_), _) => "revoked",
                    // Hashed by an earlier version: no longer accepted, re-create it.
                    (None, true) => "legacy (re-create)",
                    (None, false) => "active",
                };
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
