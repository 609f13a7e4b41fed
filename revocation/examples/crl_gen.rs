//! One CRL build of N entries with wall time and peak RSS, for the issue's
//! "1M entries ≤ 2 s, ≤ 300 MB" budget:
//!
//! ```text
//! cargo run --release -p revocation --example crl_gen -- 1000000 [out.der]
//! ```
//!
//! Prints the peak RSS (VmHWM) after building the entry list and after `build_crl`.
//! With an output path it also writes the CRL, plus `index.txt` (same serials,
//! dates and reasons) for comparing with `openssl ca -gencrl`.

use std::error::Error;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hsm::KeyStore;
use revocation::crl::{build_crl, CrlKind, CrlParams, Reason, RevokedEntry};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

const REASONS: [(u8, &str); 6] = [
    (0, "unspecified"),
    (1, "keyCompromise"),
    (2, "CACompromise"),
    (3, "affiliationChanged"),
    (4, "superseded"),
    (5, "cessationOfOperation"),
];

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().as_deref().unwrap_or("1000000").parse()?;
    let out = args.next();
    let (store, _dir) = hsm::testing::software_store()?;
    let signer = store.generate("crl", hsm::KeyAlgorithm::EcdsaP256)?;
    let entries: Vec<RevokedEntry> = (0..n)
        .map(|i| {
            let mut serial = vec![0x4a; 16];
            serial[8..].copy_from_slice(&(i as u64).to_be_bytes());
            RevokedEntry {
                serial,
                revoked_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
                reason: Reason::from_code(REASONS[i % REASONS.len()].0),
            }
        })
        .collect();
    let hwm_entries = vm_hwm_kib();
    // CN=Device Issuing CA
    let name = [
        0x30, 0x1c, 0x31, 0x1a, 0x30, 0x18, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x11, b'D', b'e', b'v', b'i', b'c',
        b'e', b' ', b'I', b's', b's', b'u', b'i', b'n', b'g', b' ', b'C', b'A',
    ];
    let now = SystemTime::now();
    let params = CrlParams {
        issuer_name_der: &name,
        issuer_key_id: &[7; 20],
        crl_number: 42,
        this_update: now,
        next_update: now + Duration::from_secs(86_400),
        kind: CrlKind::Full,
        entries: &entries,
        freshest_crl_url: None,
        distribution_point: None,
    };
    let start = Instant::now();
    let crl = build_crl(&params, signer.as_ref())?;
    let elapsed = start.elapsed();
    println!(
        "entries={n} crl_bytes={} build_crl={:.3}s peak_rss_after_entries={} MiB peak_rss_total={} MiB",
        crl.len(),
        elapsed.as_secs_f64(),
        hwm_entries / 1024,
        vm_hwm_kib() / 1024
    );
    if let Some(path) = out {
        std::fs::write(&path, &crl)?;
        let mut index = String::with_capacity(n * 80);
        for (i, e) in entries.iter().enumerate() {
            let secs = e.revoked_at.duration_since(UNIX_EPOCH)?.as_secs();
            let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))?;
            let when = format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}Z",
                dt.year() % 100,
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minutes(),
                dt.seconds()
            );
            let reason = REASONS[i % REASONS.len()].1;
            index.push_str(&format!(
                "R\t301231235959Z\t{when},{reason}\t{}\tunknown\t/CN=leaf{i}\n",
                hex_upper(&e.serial)
            ));
        }
        std::fs::write(format!("{path}.index.txt"), index)?;
    }
    Ok(())
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
