//! The Prometheus rules in `deploy/` as Prometheus loads them: `promtool check rules`
//! (syntax, PromQL, templates) and `promtool test rules` (each alert fires when the
//! series say it should, with the labels and text it should, and not before).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{ensure, Result};

fn promtool(args: &[&str]) -> Result<e2e_tests::Output> {
    let promtool = e2e_tests::require_tool("promtool")?;
    let mut cmd = std::process::Command::new(promtool);
    cmd.current_dir(e2e_tests::workspace_root().join("deploy/prometheus")).args(args);
    e2e_tests::run_with_timeout(&mut cmd, Duration::from_secs(60))
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let check = promtool(&["check", "rules", "alerts.yml"])?;
    ensure!(check.success(), "promtool check rules:\n{}", check.describe());
    ensure!(check.stdout.contains("SUCCESS: 14 rules found"), "{}", check.describe());
    let test = promtool(&["test", "rules", "alerts.test.yml"])?;
    ensure!(test.success() && test.stdout.contains("SUCCESS"), "promtool test rules:\n{}", test.describe());
    Ok(())
}
