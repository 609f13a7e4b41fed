//! `ca-service devices import`: register a batch from a CSV file, all rows or none.
//! Devices are known before they enroll; enrollment checks this registry.

use std::path::Path;

use anyhow::{bail, Context};

use super::{Ctx, DevicesCommand};
use crate::config::Config;

pub(super) async fn run(ctx: Ctx, command: DevicesCommand) -> anyhow::Result<()> {
    let DevicesCommand::Import { batch, model, class, allow_reprovision, file } = command;
    import(&ctx, &batch, model.as_deref(), &class, allow_reprovision, &file).await
}

async fn import(
    ctx: &Ctx,
    batch: &str,
    model: Option<&str>,
    class: &str,
    allow_reprovision: bool,
    file: &Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let devices = parse_devices(&text, batch, model, class, allow_reprovision, &ctx.config)
        .with_context(|| format!("{}", file.display()))?;
    let audit = crate::audit::AuditEvent::success(&ctx.actor, "device.register", format!("batch:{batch}"))
        .with_details(serde_json::json!({ "devices": devices.len(), "reprovision": allow_reprovision }));
    ctx.store.add_devices(&devices, audit).await?;
    println!("registered {} devices in batch {batch}", devices.len());
    Ok(())
}

/// Parses a device CSV (see `devices import`).
fn parse_devices(
    text: &str,
    batch: &str,
    default_model: Option<&str>,
    default_class: &str,
    reprovision: bool,
    config: &Config,
) -> anyhow::Result<Vec<crate::store::DeviceRecord>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("device_id")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = || format!("line {}", n + 1);
        if fields.len() > 4 {
            bail!("{}: expected at most 4 fields (device id, model, class, hardware serial)", at());
        }
        let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
        let id = field(0).with_context(|| format!("{}: empty device id", at()))?;
        crate::profile::validate_device_id(id).with_context(at)?;
        let model = field(1).or(default_model).with_context(|| format!("{}: no model (give --model)", at()))?;
        if !config.models.contains_key(model) {
            bail!("{}: model '{model}' is not configured ([models] in the config)", at());
        }
        if !seen.insert(id.to_string()) {
            bail!("{}: device '{id}' appears twice", at());
        }
        out.push(crate::store::DeviceRecord {
            device_id: id.to_string(),
            model: model.to_string(),
            class: field(2).unwrap_or(default_class).to_string(),
            batch: batch.to_string(),
            hardware_serial: field(3).map(str::to_string),
            state: crate::store::DeviceState::Expected,
            reprovision,
        });
    }
    if out.is_empty() {
        bail!("no devices in the file");
    }
    Ok(out)
}
