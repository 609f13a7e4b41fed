//! `ca-service ota sign|verify`: the reference signer and verifier of firmware-update
//! signatures (detached CMS); the work is in [`crate::ota`].

use anyhow::bail;

use super::{Ctx, OtaCommand};

pub(super) async fn run(ctx: Ctx, command: OtaCommand) -> anyhow::Result<()> {
    match command {
        OtaCommand::Verify { signature, trust, crl, class, class_oid, at, at_signing_time, log_key, proof, file } => {
            let args = crate::ota::VerifyArgs {
                signature,
                file,
                trust,
                crls: crl,
                class,
                class_oid,
                at,
                at_signing_time,
                log_keys: log_key,
                proof,
            };
            crate::ota::verify(&ctx.config, ctx.store.as_ref(), &ctx.actor, &args).await?;
        }
        OtaCommand::Sign {
            cert,
            chain,
            key_file,
            pkcs11_module,
            token_label,
            key_label,
            pin_env,
            out,
            proof,
            file,
        } => {
            let key = match (key_file, pkcs11_module, token_label, key_label) {
                (Some(path), None, _, _) => crate::ota::SigningKey::File(path),
                (None, Some(module), Some(token_label), Some(key_label)) => {
                    crate::ota::SigningKey::Pkcs11 { module, token_label, key_label, pin_env }
                }
                _ => bail!("give --key-file, or --pkcs11-module with --token-label and --key-label"),
            };
            let paths = crate::ota::SignPaths {
                cert: &cert,
                chain: chain.as_deref(),
                proof: proof.as_deref(),
                file: &file,
                out: &out,
            };
            crate::ota::sign(ctx.store.as_ref(), &ctx.actor, key, &paths).await?;
        }
    }
    Ok(())
}
