//! `ca-service ca list|csr|import|rollover|destroy`: list the CAs and their key
//! generations; write a CSR for a CA's key to have it signed externally; install the
//! externally signed certificate; roll a CA over to a new key; destroy a retired one.

use anyhow::Context;

use super::{ensure_hierarchy, write_out, CaCommand, Ctx};
use crate::hierarchy;
use crate::issuance::unix;
use crate::rollover::{self, Rolled, RolloverRequest};

pub(super) async fn run(ctx: Ctx, command: CaCommand) -> anyhow::Result<()> {
    let now = unix(std::time::SystemTime::now());
    let when = |what: &str, at: Option<String>| -> anyhow::Result<Option<i64>> {
        at.filter(|a| a != "now")
            .map(|a| crate::rotation::parse_future(what, &a, now))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    match command {
        CaCommand::List => {
            ensure_hierarchy(ctx.store.as_ref()).await?;
            let records = ctx.store.list_cas().await?;
            for (ca, record) in hierarchy::summaries(&records).into_iter().zip(&records) {
                println!("{ca}\n{:<18} {}", "", rollover::state(&records, record, now));
            }
        }
        CaCommand::Csr { ca, out } => {
            let pem = hierarchy::ca_csr(&ctx.config, ctx.store.as_ref(), ctx.keys, &ca).await?;
            write_out(out.as_deref(), &pem)?;
        }
        CaCommand::Import { ca, cert, issues_from } => {
            let bytes = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            let issues_from = when("time", issues_from)?;
            let summary =
                hierarchy::ca_import(&ctx.config, ctx.store.as_ref(), ctx.keys, &ca, &bytes, issues_from, &ctx.actor)
                    .await?;
            println!("Installed:\n{summary}");
        }
        CaCommand::Rollover { ca, at, external, out } => {
            ensure_hierarchy(ctx.store.as_ref()).await?;
            // A bad time is audited like every other refusal of the command.
            let parsed =
                async { when("takeover time", at).map_err(|e| hierarchy::HierarchyError::Refused(e.to_string())) };
            let issues_from =
                rollover::audited(ctx.store.as_ref(), &ctx.actor, "ca.rollover", &format!("ca:{ca}"), parsed).await?;
            let request = RolloverRequest { ca, issues_from, external, actor: ctx.actor.clone() };
            match rollover::rollover(&ctx.config, ctx.store.as_ref(), ctx.keys.clone(), request).await? {
                Rolled::Certified(summary) => {
                    println!("Rolled over:\n{summary}");
                    if summary.parent.is_none() {
                        // A new root's first CRL, as `init` signs it: the CAs it will
                        // certify point their CRL distribution point at it.
                        let Ctx { config, store, keys, actor, .. } = ctx;
                        let pki = crate::issuance::Pki::load(config, store, keys.clone()).await?;
                        let days = super::crl::FIRST_ROOT_CRL_DAYS;
                        super::crl::sign_and_store(&pki, &keys, &summary.name, days, &actor).await?;
                        println!(
                            "Signed the first CRL of {} (valid {days} days; renew it with `ca-service crl --ca {}`)",
                            summary.name, summary.name
                        );
                    }
                    println!(
                        "Restart every serving instance to load the new key; it issues from {}.",
                        issues_from.and_then(crate::issuance::rfc3339).unwrap_or_else(|| "now".into())
                    );
                }
                Rolled::AwaitingCertificate { name, csr_pem } => {
                    write_out(out.as_deref(), &csr_pem)?;
                    eprintln!(
                        "The new key '{name}' waits for its certificate: have the CSR signed by the parent, then run \
                         `ca-service ca import --ca {name} --cert FILE [--issues-from TIME]`."
                    );
                }
            }
        }
        CaCommand::Destroy { ca } => {
            rollover::destroy(&ctx.config, ctx.store.as_ref(), ctx.keys, &ca, &ctx.actor).await?;
            println!("Destroyed the key of '{ca}' and of its OCSP signer; its CRLs and certificates stay published.");
        }
    }
    Ok(())
}
