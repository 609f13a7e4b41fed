//! `ca-service revoke`: a certificate, or a device, a batch or a model with all their
//! certificates, through [`crate::revoke`] like the admin API. This process has no
//! OCSP cache, but it re-signs the CRLs the revocation changed before it returns; if
//! the CA keys cannot be loaded here, it revokes all the same and leaves publishing to
//! the serving instances ([`Publish::Elsewhere`]; see [`crate::revoke`]).

use anyhow::bail;

use super::Ctx;
use crate::issuance::Pki;
use crate::revoke::{self, Order, Publish, Revoked, Target, Via};
use crate::store::DeviceSelector;

pub(super) async fn run(
    ctx: Ctx,
    issuer: Option<String>,
    serial: Option<String>,
    device: Option<String>,
    batch: Option<String>,
    model: Option<String>,
    reason: &str,
) -> anyhow::Result<()> {
    let reason = revoke::parse_reason(reason).map_err(anyhow::Error::msg)?;
    let target = match (device, batch, model, issuer, serial) {
        (Some(d), ..) => Target::Devices(DeviceSelector::Device(d)),
        (_, Some(b), ..) => Target::Devices(DeviceSelector::Batch(b)),
        (_, _, Some(m), ..) => Target::Devices(DeviceSelector::Model(m)),
        (_, _, _, Some(issuer), Some(serial)) => {
            Target::Certificate { issuer, serial: crate::crl::parse_serial(&serial).map_err(anyhow::Error::msg)? }
        }
        _ => bail!("give --issuer and --serial, or --device, --batch or --model"),
    };
    let pki = match Pki::load(ctx.config.clone(), ctx.store.clone(), ctx.keys.clone()).await {
        Ok(pki) => Some(pki),
        Err(e) => {
            eprintln!("warning: the CA keys cannot be loaded ({e}); the service's CRL job will re-sign the CRLs");
            None
        }
    };
    let publish = match &pki {
        Some(pki) => Publish::Here { pki, ocsp: None, crls: None },
        None => Publish::Elsewhere,
    };
    let order = Order { target, reason, actor: &ctx.actor, via: Via::Cli };
    let name = revoke::reason_name(reason);
    match revoke::revoke(ctx.store.as_ref(), order, publish).await? {
        Revoked::Devices { which, devices, certificates } => {
            println!("revoked {which}: {devices} device(s), {} certificate(s), reason {name}", certificates.len());
            for c in certificates {
                println!("  {}/{}", c.issuer, hex::encode(&c.serial));
            }
        }
        Revoked::Certificate(record) => {
            println!("revoked {}/{} ({}), reason {name}", record.issuer, hex::encode(&record.serial), record.subject);
        }
    }
    Ok(())
}
