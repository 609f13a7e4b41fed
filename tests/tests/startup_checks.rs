//! What `serve` refuses at start instead of running on a silent default (DESIGN §6
//! invariant 9, issue 12 items 4 and 5): configuration typos in the file and in `CA_…`
//! variables, secret files others can read, a second server on one SQLite database,
//! and a damaged SQLite file. And what it creates: data files `0600`, directories
//! `0700`, whatever the umask.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e_tests::{free_port, http_get, sqlite_path, ChildGuard, Cli, Service};

fn write_config(dir: &Path, toml: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("pki.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// `serve` with this configuration file exits at once, non-zero, saying all of `says`.
fn refused(cli: &Cli, says: &[&str]) -> Result<String> {
    let out = cli.run(&["serve"])?;
    assert!(!out.success(), "serve started:\n{}", out.describe());
    for s in says {
        assert!(out.stderr.contains(s), "expected {s:?} in the refusal:\n{}", out.describe());
    }
    Ok(out.stderr)
}

#[test]
fn configuration_typos_are_refused_at_start_naming_key_and_nearest() -> Result<()> {
    let dir = e2e_tests::workdir("strict-config")?;
    let d = dir.path();

    let file = write_config(d, "[server]\nhtps = \"127.0.0.1:9443\"\n")?;
    refused(&Cli::evaluation(d).with_config(&file), &["unknown key `server.htps`", "did you mean `server.https`?"])?;

    let file = write_config(d, "[est]\nrenewal_min_intervall_secs = 60\n")?;
    refused(
        &Cli::evaluation(d).with_config(&file),
        &["unknown key `est.renewal_min_intervall_secs`", "did you mean `est.renewal_min_interval_secs`?"],
    )?;

    // A PostgreSQL deployment whose storage table is misspelled must not fall back to
    // the embedded SQLite default (and tell the operator to `init` a second hierarchy).
    let file = write_config(d, "[storgae]\nurl = \"postgres://pki@127.0.0.1:1/pki?sslmode=disable\"\n")?;
    let stderr =
        refused(&Cli::evaluation(d).with_config(&file), &["unknown key `storgae`", "did you mean `storage`?"])?;
    assert!(!stderr.contains("init"), "{stderr}");

    // The same typo in an environment variable names the variable.
    refused(
        &Cli::evaluation(d).env("CA_SERVER__HTPS", "127.0.0.1:9443"),
        &["unknown key `server.htps`", "CA_SERVER__HTPS", "CA_SERVER__HTTPS"],
    )?;
    // Nothing was created on the way.
    assert!(!d.join("pki-data").exists(), "a refused start created the data directory");

    // CA_CONFIG and CA_LOG are not configuration keys; a map table takes new entries.
    Cli::evaluation(d).run_ok(&["init"])?;
    let file = write_config(d, "[est.labels]\nfactory = \"device\"\n")?;
    let cli = Cli::evaluation(d).env("CA_CONFIG", file.to_string_lossy()).env("CA_LOG", "warn");
    let svc = Service::start(&cli)?;
    let (status, _) = http_get(svc.http, "/readyz")?;
    assert_eq!(status, 200);
    svc.stop();
    Ok(())
}

#[test]
fn secret_files_others_can_read_are_refused_at_start() -> Result<()> {
    let dir = e2e_tests::workdir("secret-mode")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    let pass = d.join("pki-data").join("keystore.pass");
    assert_eq!(mode(&pass)?, 0o600, "the evaluation passphrase file");

    for bad in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(bad))?;
        let stderr = refused(&cli, &["keystore.pass", &format!("mode {bad:04o}")])?;
        assert!(stderr.contains("group or others"), "{stderr}");
        // Every command, not only the server.
        let out = cli.run(&["ca", "list"])?;
        assert!(!out.success() && out.stderr.contains(&format!("{bad:04o}")), "{}", out.describe());
    }
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o400))?;
    Service::start(&cli)?.stop();
    Ok(())
}

fn mode(p: &Path) -> Result<u32> {
    Ok(std::fs::metadata(p).with_context(|| format!("{}", p.display()))?.permissions().mode() & 0o7777)
}

/// Starts `ca-service serve` under `umask 0` (through `sh`), on free ports, and waits
/// for `/healthz`.
fn serve_with_umask_0(cli: &Cli) -> Result<(ChildGuard, std::net::SocketAddr)> {
    let inner = cli.command()?;
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 0; exec \"$0\" \"$@\"").arg(inner.get_program()).args(inner.get_args()).arg("serve");
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("CA_SERVER__HTTP", http.to_string())
        .env("CA_SERVER__HTTPS", format!("127.0.0.1:{}", free_port()?))
        .env("CA_PUBLIC_BASE_URL", format!("http://{http}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(&mut cmd, "ca-service serve (umask 0)")?;
    let deadline = Instant::now() + e2e_tests::START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("serve exited during start: {status}");
        }
        if matches!(http_get(http, "/healthz"), Ok((200, _))) {
            return Ok((child, http));
        }
        if Instant::now() > deadline {
            bail!("serve did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn data_files_are_private_whatever_the_umask() -> Result<()> {
    let dir = e2e_tests::workdir("file-modes")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    // The first start creates everything (evaluation mode), with a umask that would
    // leave every file open to everyone.
    let (server, _) = serve_with_umask_0(&cli)?;
    let data = d.join("pki-data");
    let db = sqlite_path(d);
    let mut expected = vec![
        (data.clone(), 0o700),
        (data.join("keys"), 0o700),
        (data.join("keystore.pass"), 0o600),
        (db.clone(), 0o600),
        (data.join("pki.db-wal"), 0o600),
        (data.join("pki.db-shm"), 0o600),
        (data.join("pki.db.lock"), 0o600),
    ];
    for entry in std::fs::read_dir(data.join("keys"))? {
        expected.push((entry?.path(), 0o600));
    }
    assert!(expected.len() > 9, "no key files in {}", data.join("keys").display());
    for (path, want) in expected {
        assert_eq!(mode(&path)?, want, "{} is {:04o}, expected {want:04o}", path.display(), mode(&path)?);
    }
    drop(server);
    Ok(())
}

#[test]
fn one_serve_per_sqlite_database() -> Result<()> {
    let dir = e2e_tests::workdir("serve-lock")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    let first = Service::start(&cli)?;

    // A second server on the same data directory (other ports) refuses to start.
    let second = cli
        .clone()
        .env("CA_SERVER__HTTP", format!("127.0.0.1:{}", free_port()?))
        .env("CA_SERVER__HTTPS", format!("127.0.0.1:{}", free_port()?));
    let started = Instant::now();
    let stderr = refused(&second, &["already running", "pki.db"])?;
    assert!(started.elapsed() < Duration::from_secs(20), "the refusal took {:?}", started.elapsed());
    let holder = std::fs::read_to_string(d.join("pki-data").join("pki.db.lock"))?;
    assert!(!holder.trim().is_empty() && stderr.contains(&format!("process {}", holder.trim())), "{stderr}");

    // Other commands still work next to the server.
    assert!(cli.audit_entries()? > 0);
    cli.run_ok(&["ca", "list"])?;

    // Once the first is gone (even killed), the next one starts.
    first.stop();
    Service::start(&cli)?.stop();
    Ok(())
}

/// Overwrites `len` bytes at `offset` of `path` with pseudo-random garbage.
fn garbage(path: &Path, offset: u64, len: usize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut x = e2e_tests::random_u64() | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Moves everything from the write-ahead log into the database file, so that damage
/// done to the file is not masked by newer pages in the log.
fn checkpoint(db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        bail!("the checkpoint of {} did not complete", db.display());
    }
    Ok(())
}

#[test]
fn a_damaged_sqlite_database_is_refused_at_start_and_not_ready() -> Result<()> {
    let dir = e2e_tests::workdir("sqlite-corrupt")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    let db = sqlite_path(d);
    checkpoint(&db)?;
    let pristine = std::fs::read(&db)?;

    // 64 KiB of garbage behind an intact header page: the file still opens, but its
    // tables are gone. Refused at start, with a reason.
    garbage(&db, 4096, 64 * 1024)?;
    refused(&cli, &["damaged", "pki.db"])?;

    // The whole file replaced by 64 KiB of garbage.
    std::fs::write(&db, [])?;
    garbage(&db, 0, 64 * 1024)?;
    refused(&cli, &["damaged", "pki.db"])?;

    // Damaged while running: /readyz says so (503, with the reason), and no request
    // answers 500.
    std::fs::write(&db, &pristine)?;
    let svc = Service::start(&cli)?;
    let (status, _) = http_get(svc.http, "/readyz")?;
    assert_eq!(status, 200);
    checkpoint(&db)?;
    garbage(&db, 0, 64 * 1024)?;
    let (status, body) = http_get(svc.http, "/readyz")?;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"ready\":false") && body.contains("damaged"), "{body}");
    svc.stop();
    Ok(())
}
