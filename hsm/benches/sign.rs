//! Signing throughput: software keys (aws-lc) and SoftHSM2 through the session pool.
//!
//! Run: `cargo bench -p hsm -- --warm-up-time 1 --measurement-time 3`
//! The SoftHSM benches need softhsm2 installed (module at `$PKCS11_MODULE` or the
//! Debian default); they create their own temporary token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hsm::pkcs11::Pkcs11KeyStore;
use hsm::testing::{software_store, SoftHsmFixture};
use hsm::{KeyAlgorithm, KeyStore, Signer};

/// A TBS certificate is a few hundred bytes.
const MESSAGE: &[u8] = &[0x5a; 512];
/// Signatures per iteration of the multi-threaded benches.
const BATCH: u64 = 200;

fn software(c: &mut Criterion) {
    let (store, _dir) = software_store().unwrap();
    let mut group = c.benchmark_group("software");
    group.throughput(Throughput::Elements(1));
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let signer = store.generate(&format!("bench-{alg}"), alg).unwrap();
        group.bench_function(format!("sign/{alg}"), |b| b.iter(|| signer.sign(black_box(MESSAGE)).unwrap()));
    }
    // Baseline for the SoftHSM 2-thread figure: how well this machine scales at all.
    let signer = store.find("bench-ecdsa-p256").unwrap();
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("sign/ecdsa-p256/2-threads-batch", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| sign_batch(&signer, 2, BATCH)).sum())
    });
    group.finish();
}

/// Signs `total` messages spread over `threads` OS threads; returns the wall time.
fn sign_batch(signer: &Arc<dyn Signer>, threads: usize, total: u64) -> Duration {
    let per_thread = total.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    black_box(signer.sign(black_box(MESSAGE)).unwrap());
                }
            });
        }
    });
    start.elapsed()
}

fn softhsm(c: &mut Criterion) {
    let fixture = SoftHsmFixture::new().unwrap_or_else(|e| panic!("SoftHSM2 bench token: {e}"));
    let mut config = fixture.config.clone();
    config.sessions = 2;
    let store = Pkcs11KeyStore::open(&config).unwrap();
    let signer = store.generate("bench-p256", KeyAlgorithm::EcdsaP256).unwrap();

    let mut group = c.benchmark_group("softhsm");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign/ecdsa-p256/1-thread", |b| b.iter(|| signer.sign(black_box(MESSAGE)).unwrap()));
    // One iteration = a batch of BATCH signatures over 2 threads (pool of 2
    // sessions), so the reported element rate is the aggregate signing rate.
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("sign/ecdsa-p256/2-threads-batch", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| sign_batch(&signer, 2, BATCH)).sum())
    });
    group.finish();
}

criterion_group!(benches, software, softhsm);
criterion_main!(benches);
