//! CRL encode + sign throughput at 100k and 1M revoked entries (software P-256 key).
//! `cargo bench -p revocation --bench crl`; for time + peak RSS of one run see
//! `examples/crl_gen.rs`.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use hsm::KeyStore;
use revocation::crl::{build_crl, CrlKind, CrlParams, Reason, RevokedEntry};

fn entries(n: usize) -> Vec<RevokedEntry> {
    (0..n)
        .map(|i| {
            // 16-byte positive serials, like the service's.
            let mut serial = vec![0x4a; 16];
            serial[8..].copy_from_slice(&(i as u64).to_be_bytes());
            RevokedEntry {
                serial,
                revoked_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
                reason: Reason::from_code((i % 6) as u8),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let Ok((store, _dir)) = hsm::testing::software_store() else { return };
    let Ok(signer) = store.generate("crl-bench", hsm::KeyAlgorithm::EcdsaP256) else { return };
    let name = [
        0x30, 0x1c, 0x31, 0x1a, 0x30, 0x18, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x11, b'D', b'e', b'v', b'i', b'c',
        b'e', b' ', b'I', b's', b's', b'u', b'i', b'n', b'g', b' ', b'C', b'A',
    ];
    let now = SystemTime::now();
    let mut group = c.benchmark_group("crl");
    group.sample_size(10);
    for n in [100_000usize, 1_000_000] {
        let list = entries(n);
        let params = CrlParams {
            issuer_name_der: &name,
            issuer_key_id: &[7; 20],
            crl_number: 42,
            this_update: now,
            next_update: now + Duration::from_secs(86_400),
            kind: CrlKind::Full,
            entries: &list,
            freshest_crl_url: None,
            distribution_point: None,
        };
        group.bench_function(format!("build_crl_{n}"), |b| {
            b.iter(|| black_box(build_crl(black_box(&params), signer.as_ref()).map(|v| v.len()).unwrap_or(0)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
