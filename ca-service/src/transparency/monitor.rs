//! `ca-service log monitor`: follows a log from anywhere, with nothing but its URL
//! and verifier key — no database, no configuration.
//!
//! Each run verifies the newest checkpoint's signature, proves with the served tiles
//! that it extends the checkpoint saved in the state file, fetches the entries added
//! since, recomputes the root from them and compares it with the signed one, and only
//! then saves the new checkpoint. Beside the state file (`STATE.leaves`) it keeps the
//! leaf hash of every entry it has verified, 32 bytes each, so that when the log is
//! found rewritten it can name the first entry that differs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tlog::{Checkpoint, Frontier, Hash, TileHashes, TileId, Verifier, TILE_WIDTH};

/// The longest body the monitor reads (a full entry bundle is at most 256 × 64 KiB).
const MAX_BODY: u64 = 17 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    origin: String,
    size: u64,
    root: String,
    /// The signed checkpoint, verbatim (what `audit verify --checkpoint` reads).
    checkpoint: String,
    frontier: String,
}

/// Reads the checkpoint out of a monitor state file, or returns the text unchanged.
pub fn note_from_file(text: &str) -> String {
    match serde_json::from_str::<State>(text) {
        Ok(state) => state.checkpoint,
        Err(_) => text.to_string(),
    }
}

struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(url: &str, token: Option<String>, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = ureq::tls::TlsConfig::builder().unversioned_rustls_crypto_provider(provider);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = pem::parse_many(&pem)?
                .into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(|p| ureq::tls::Certificate::from_der(p.contents()).to_owned())
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build();
        Ok(Self { agent: config.into(), base: url.trim_end_matches('/').to_string(), token })
    }

    fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut res = req.call().with_context(|| format!("GET {url}"))?;
        let status = res.status();
        let body = res.body_mut().with_config().limit(MAX_BODY).read_to_vec().with_context(|| format!("GET {url}"))?;
        if status != 200 {
            bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body).trim());
        }
        Ok(body)
    }

    fn tiles(&self, tiles: &[TileId], into: &mut TileHashes) -> anyhow::Result<()> {
        for &t in tiles {
            into.insert_bytes(t, &self.get(&t.path())?)?;
        }
        Ok(())
    }
}

fn leaves_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".leaves");
    PathBuf::from(p)
}

fn hex_hash(s: &str) -> anyhow::Result<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).context("bad hash in the state file")?;
    Ok(h)
}

/// The first leaf index in `0..size` whose served hash differs from the one saved.
fn first_difference(client: &Client, saved: &[u8], size: u64) -> anyhow::Result<Option<u64>> {
    for index in 0..size.div_ceil(TILE_WIDTH) {
        let width = (size - index * TILE_WIDTH).min(TILE_WIDTH) as u16;
        let tile = TileId { level: 0, index, width };
        let served = match client.get(&tile.path()) {
            Ok(body) => body,
            // A tile the checkpoint covers that cannot be served: its entries are gone.
            Err(_) => return Ok(Some(index * TILE_WIDTH)),
        };
        let start = (index * TILE_WIDTH) as usize * 32;
        let mine = &saved[start..start + served.len().min(usize::from(width) * 32)];
        if let Some(i) = served.chunks(32).zip(mine.chunks(32)).position(|(a, b)| a != b) {
            return Ok(Some(index * TILE_WIDTH + i as u64));
        }
        if served.len() != usize::from(width) * 32 {
            return Ok(Some(index * TILE_WIDTH + (served.len() / 32) as u64));
        }
    }
    Ok(None)
}

pub async fn run(
    url: &str,
    vkey: &str,
    state: &Path,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> anyhow::Result<()> {
    let (url, vkey, state) = (url.to_string(), vkey.to_string(), state.to_path_buf());
    let token = match token_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?.trim().to_string())
        }
        None => None,
    };
    let ca_file = ca_file.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || monitor(&url, &vkey, &state, token, ca_file.as_deref())).await?
}

fn monitor(
    url: &str,
    vkey: &str,
    state_path: &Path,
    token: Option<String>,
    ca_file: Option<&Path>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let verifier = Verifier::parse(vkey)?;
    let origin = verifier.name().to_string();
    let client = Client::new(url, token, ca_file)?;
    let note = String::from_utf8(client.get("checkpoint")?).context("the checkpoint is not UTF-8")?;
    let text = tlog::open_note(&note, std::slice::from_ref(&verifier)).context("the checkpoint does not verify")?;
    let cp = Checkpoint::parse(&text)?;
    if cp.origin != origin {
        bail!("the checkpoint is for log '{}', not '{origin}'", cp.origin);
    }
    let leaves_file = leaves_path(state_path);
    let (old_size, old_root, mut frontier, mut saved) = match std::fs::read_to_string(state_path) {
        Ok(text) => {
            let s: State = serde_json::from_str(&text).context("the state file is not a monitor state")?;
            if s.origin != origin {
                bail!("the state file follows log '{}', not '{origin}'", s.origin);
            }
            let frontier = Frontier::from_bytes(&STANDARD.decode(&s.frontier)?)?;
            let saved = std::fs::read(&leaves_file).with_context(|| format!("reading {}", leaves_file.display()))?;
            if frontier.size() != s.size || saved.len() as u64 != s.size * 32 {
                bail!("the state file and {} disagree", leaves_file.display());
            }
            (s.size, hex_hash(&s.root)?, frontier, saved)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, tlog::EMPTY_ROOT, Frontier::new(), Vec::new()),
        Err(e) => return Err(e).context(format!("reading {}", state_path.display())),
    };
    if cp.size < old_size {
        bail!(
            "LOG TRUNCATED: the newest checkpoint covers {} entries, but {} was saved at {old_size}; entries {}..={old_size} are gone (first bad entry {})",
            cp.size,
            state_path.display(),
            cp.size + 1,
            cp.size + 1
        );
    }
    // The served tree must extend the saved one.
    if old_size > 0 {
        let mut tiles = TileHashes::default();
        client.tiles(&tlog::tiles_for_consistency(old_size, cp.size), &mut tiles)?;
        let proof = tiles.consistency_proof(old_size, cp.size)?;
        if tlog::verify_consistency(old_size, cp.size, &old_root, &cp.root, &proof).is_err() {
            let first = first_difference(&client, &saved, old_size)?;
            match first {
                Some(i) => {
                    bail!("LOG REWRITTEN: entry {} is not the one verified before (first bad entry {})", i + 1, i + 1)
                }
                None => bail!(
                    "LOG FORKED: the checkpoint of size {} does not extend the one of size {old_size} saved in {}",
                    cp.size,
                    state_path.display()
                ),
            }
        }
    }
    // The hashes served now must give the signed root: a rewrite of entries this
    // monitor saw before shows here even when no new checkpoint was signed.
    let mut tiles = TileHashes::default();
    let served_root = client.tiles(&tlog::tiles_for_root(cp.size), &mut tiles).and_then(|()| Ok(tiles.root(cp.size)?));
    if served_root.as_ref().ok() != Some(&cp.root) {
        match first_difference(&client, &saved, old_size)? {
            Some(i) => {
                bail!("LOG REWRITTEN: entry {} is not the one verified before (first bad entry {})", i + 1, i + 1)
            }
            None => bail!(
                "LOG INCONSISTENT: the served tiles do not give the root signed for size {}{}",
                cp.size,
                served_root.err().map(|e| format!(" ({e:#})")).unwrap_or_default()
            ),
        }
    }
    // The new entries, hashed here, must give the signed root.
    let mut new_leaves = Vec::new();
    let mut next = old_size;
    while next < cp.size {
        let index = next / TILE_WIDTH;
        let width = (cp.size - index * TILE_WIDTH).min(TILE_WIDTH) as u16;
        let tile = TileId { level: 0, index, width };
        let entries = tlog::decode_entry_bundle(&client.get(&tile.entries_path())?)?;
        if entries.len() != usize::from(width) {
            bail!("entry bundle {} holds {} entries, not {width}", tile.entries_path(), entries.len());
        }
        for e in &entries[(next - index * TILE_WIDTH) as usize..] {
            let leaf = tlog::leaf_hash(e);
            frontier.push(leaf);
            new_leaves.push(leaf);
        }
        next = index * TILE_WIDTH + u64::from(width);
    }
    if frontier.root() != cp.root {
        let served_first = {
            let mut all = saved.clone();
            all.extend(new_leaves.iter().flatten());
            first_difference(&client, &all, cp.size)?
        };
        match served_first {
            Some(i) => bail!(
                "LOG INCONSISTENT: entry {} does not match the log's hash tiles (first bad entry {})",
                i + 1,
                i + 1
            ),
            None => bail!("LOG INCONSISTENT: entries {}..={} do not give the signed root", old_size + 1, cp.size),
        }
    }
    // Saved only now: the new state is the verified one.
    let mut leaves = std::fs::OpenOptions::new().create(true).append(true).open(&leaves_file)?;
    for l in &new_leaves {
        leaves.write_all(l)?;
    }
    leaves.sync_all()?;
    saved.extend(new_leaves.iter().flatten());
    let state = State {
        origin: origin.clone(),
        size: cp.size,
        root: hex::encode(cp.root),
        checkpoint: note,
        frontier: STANDARD.encode(frontier.to_bytes()),
    };
    let tmp = state_path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    std::fs::rename(&tmp, state_path)?;
    println!(
        "log {origin} consistent: {} entries ({} new) verified up to the checkpoint of size {} in {:.2} s",
        cp.size,
        cp.size - old_size,
        cp.size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
