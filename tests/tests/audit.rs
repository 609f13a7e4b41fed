//! The audit log's hash chain, on both stores: `audit verify` passes on an untouched
//! log and names the entry when a row is edited or deleted directly in the database.

use anyhow::Result;
use e2e_tests::{make_csr, sqlite_execute, Cli, TestDb, P256};

/// init + one issuance; returns the number of audit entries.
fn populate(cli: &Cli) -> Result<u64> {
    cli.run_ok(&["init"])?;
    let csr = make_csr(&cli.workdir, "dev", P256, "/CN=SN-AUDIT", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", e2e_tests::path_str(&csr)?, "--out", "dev.pem"])?;
    let out = cli.run_ok(&["audit", "verify"])?;
    assert!(out.stdout.contains("audit log intact"), "{}", out.describe());
    let n = e2e_tests::parse_audit_count(&out.stdout).unwrap_or(0);
    // 5 CAs + 3 OCSP signers + 1 certificate.
    assert!(n >= 9, "expected at least 9 audit entries after init and one issuance, got {n}");
    Ok(n)
}

/// `audit verify` must fail and name entry `seq`.
fn assert_broken_at(cli: &Cli, seq: u64, what: &str) -> Result<()> {
    let out = cli.run(&["audit", "verify"])?;
    assert!(!out.success(), "{what}: `audit verify` did not notice:\n{}", out.describe());
    assert!(
        out.stderr.contains(&format!("entry {seq}:")) || out.stderr.contains(&format!("entry {seq} ")),
        "{what}: `audit verify` should name entry {seq}:\n{}",
        out.describe()
    );
    Ok(())
}

/// Edits (and restores) and deletes rows through `exec` (SQL valid in both SQLite and
/// PostgreSQL); after each restore the log must verify again, so every detection is
/// about the change just made.
fn tamper(cli: &Cli, n: u64, exec: &dyn Fn(&str) -> Result<u64>) -> Result<()> {
    // A middle entry and the newest one (no successor links to it), several columns.
    for (seq, column) in [(3, "outcome"), (n, "outcome"), (2, "actor"), (n - 1, "details"), (1, "action")] {
        let edit = format!("UPDATE audit_log SET {column} = {column} || 'x' WHERE seq = {seq}");
        assert_eq!(exec(&edit)?, 1, "{edit}");
        assert_broken_at(cli, seq, &format!("edited {column} of entry {seq}"))?;
        let undo =
            format!("UPDATE audit_log SET {column} = substr({column}, 1, length({column}) - 1) WHERE seq = {seq}");
        assert_eq!(exec(&undo)?, 1, "{undo}");
        assert_eq!(cli.audit_entries()?, n, "restoring entry {seq} should make the log verify again");
    }
    // A deleted middle entry.
    assert_eq!(exec("DELETE FROM audit_log WHERE seq = 4")?, 1);
    assert_broken_at(cli, 4, "deleted entry 4")?;
    Ok(())
}

#[test]
fn sqlite_audit_tampering_is_detected() -> Result<()> {
    let dir = e2e_tests::workdir("audit-sqlite")?;
    let cli = Cli::evaluation(dir.path());
    let n = populate(&cli)?;
    let d = dir.path().to_path_buf();
    tamper(&cli, n, &|sql| Ok(sqlite_execute(&d, sql)? as u64))
}

#[test]
fn postgres_audit_tampering_is_detected() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("audit-pg")?;
    let cli = Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url);
    let n = populate(&cli)?;
    assert_eq!(db.query_i64("SELECT count(*) FROM audit_log")?, n as i64, "the log is in PostgreSQL");
    tamper(&cli, n, &|sql| db.execute(sql))
}

/// Removing the newest entries leaves a shorter chain that is internally consistent;
/// `audit verify` must still notice (DESIGN §6.3: "detects any edit"), e.g. because a
/// stored certificate has no issuance entry any more.
#[test]
fn truncating_the_newest_audit_entry_is_detected() -> Result<()> {
    let dir = e2e_tests::workdir("audit-trunc")?;
    let cli = Cli::evaluation(dir.path());
    let n = populate(&cli)?;
    assert_eq!(sqlite_execute(dir.path(), &format!("DELETE FROM audit_log WHERE seq = {n}"))?, 1);
    let out = cli.run(&["audit", "verify"])?;
    assert!(
        !out.success(),
        "deleting the newest audit entry (the issuance of a certificate that is still stored) went unnoticed:\n{}",
        out.describe()
    );
    Ok(())
}
