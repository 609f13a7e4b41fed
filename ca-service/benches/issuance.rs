//! Issuance throughput: CSR (DER) → checked → certificate built and signed → record
//! and audit entry committed → released. Software keys on SQLite and PostgreSQL at 1
//! and 16 concurrent tasks; SoftHSM-backed issuance next to SoftHSM's raw sign rate
//! measured in the same run (same sessions, same threads).
//!
//! `cargo bench -p ca-service --bench issuance`; PostgreSQL from `DATABASE_URL`
//! (default: local server), one throw-away database per run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_service::issuance::{IssueRequest, Pki};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

const CSR_POOL: usize = 256;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn csrs() -> Arc<Vec<Vec<u8>>> {
    Arc::new((0..CSR_POOL).map(|i| common::csr(&format!("SN-BENCH-{i:05}"))).collect())
}

/// Issues `n` certificates with `tasks` concurrent tasks and returns the elapsed time.
async fn issue_n(pki: Arc<Pki>, csrs: Arc<Vec<Vec<u8>>>, n: u64, tasks: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (pki, csrs) = (pki.clone(), csrs.clone());
            tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    let der = &csrs[(i as usize) % csrs.len()];
                    let csr = enrollment::check_csr(der).unwrap();
                    pki.issue(IssueRequest {
                        profile: "device".into(),
                        csr,
                        device_id: None,
                        model: None,
                        actor: "bench".into(),
                    })
                    .await
                    .unwrap();
                    i += tasks;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn bench_issuance(c: &mut Criterion) {
    let rt = runtime();
    let csrs = csrs();
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let env = rt.block_on(common::Env::new(backend));
        rt.block_on(env.init());
        let pki = Arc::new(rt.block_on(env.pki()));
        let mut g = c.benchmark_group(format!("issuance/{backend:?}/software-p256"));
        g.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(8));
        for tasks in [1u64, 16] {
            g.bench_function(format!("{tasks}-tasks"), |b| {
                b.to_async(&rt).iter_custom(|n| issue_n(pki.clone(), csrs.clone(), n, tasks))
            });
        }
        g.finish();
        drop(pki);
        drop(env);
    }
}

fn bench_softhsm(c: &mut Criterion) {
    let rt = runtime();
    let csrs = csrs();
    let token = hsm::testing::SoftHsmFixture::new().unwrap();
    let pin_file = match &token.config.pin {
        hsm::SecretSource::File(p) => p.clone(),
        other => panic!("fixture PIN source {other:?}"),
    };
    let env = rt.block_on(common::Env::with_config(common::Backend::Postgres, |cfg| {
        cfg.key_stores.insert(
            "hsm".into(),
            ca_service::config::KeyStoreConfig::Pkcs11 {
                module: token.config.module.clone(),
                token_label: token.config.token_label.clone(),
                pin_env: None,
                pin_file: Some(pin_file),
                sessions: Some(2),
            },
        );
        cfg.cas.get_mut("device").unwrap().key_store = "hsm".into();
    }));
    rt.block_on(env.init());
    let pki = Arc::new(rt.block_on(env.pki()));
    let signer = env.keys.find("hsm", "ca-device").unwrap();
    // A typical TBSCertificate is ~450 bytes; the token hashes nothing (CKM_ECDSA), so
    // the message size only matters for the host-side SHA-256.
    let tbs = vec![0x5au8; 450];

    let mut g = c.benchmark_group("softhsm-p256");
    g.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("raw-sign/2-threads", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (signer, tbs) = (&signer, &tbs);
                    s.spawn(move || {
                        let mut i = t;
                        while i < n {
                            signer.sign(tbs).unwrap();
                            i += 2;
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("issuance-postgres/16-tasks", |b| {
        b.to_async(&rt).iter_custom(|n| issue_n(pki.clone(), csrs.clone(), n, 16))
    });
    g.finish();
}

criterion_group!(benches, bench_issuance, bench_softhsm);
criterion_main!(benches);
