//! `ca-service serve`: the HTTP (public) and HTTPS listeners. In evaluation mode (no
//! configuration file) the first start creates the default hierarchy; otherwise a
//! missing hierarchy is an error (`init` is a deliberate ceremony).

use std::sync::Arc;

use super::Ctx;
use crate::hierarchy;
use crate::issuance::Pki;

pub(super) async fn run(ctx: Ctx) -> anyhow::Result<()> {
    // The SQLite lock is held until the server returns.
    let Ctx { config, store, keys, evaluation, serve_lock: _serve_lock, .. } = ctx;
    if store.list_cas().await?.is_empty() {
        if !evaluation {
            return Err(hierarchy::HierarchyError::Missing.into());
        }
        eprintln!("No CA hierarchy yet: creating the default one (evaluation mode).");
        for ca in hierarchy::init(config.clone(), store.clone(), keys.clone(), "system:first-start").await? {
            eprintln!("{ca}");
        }
    }
    let pki = Arc::new(Pki::load(config, store, keys).await?);
    crate::server::serve(pki).await?;
    Ok(())
}
