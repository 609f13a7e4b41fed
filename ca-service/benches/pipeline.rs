//! Where an enrollment's CPU goes inside `ca-service`, stage by stage, each on its
//! own so a change to one shows up there (the whole path, TLS and store included,
//! is measured by `est-load`):
//!
//! 1. the body: base64 decode, CSR parse, proof-of-possession signature check;
//! 2. the certificate: profile → TBS → P-256 signature with the software CA key;
//! 3. the audit entry: event, details JSON and its RFC 6962 leaf hash;
//! 4. the answer: the certs-only CMS SignedData, base64.
//!
//! `cargo bench -p ca-service --bench pipeline` (SQLite in a temporary directory,
//! only to load the hierarchy; nothing here touches the store).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use base64::Engine;
use ca_service::issuance::{issuance_event, EndEntity};
use ca_service::profile::Subject;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_stages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let env = rt.block_on(common::Env::new(common::Backend::Sqlite));
    rt.block_on(env.init());
    let pki = rt.block_on(env.pki());
    let csr_der = common::csr("SN-PIPELINE-00001");
    let body = base64::engine::general_purpose::STANDARD.encode(&csr_der).into_bytes();
    let ca = pki.issuing("device").expect("the device CA issues").clone();
    let not_after = ca.not_after;
    let issuer = ca.issuer().expect("with its key");
    let profile = pki.config.profiles["device"].clone();
    let csr = enrollment::check_csr(&csr_der).unwrap();
    let model_oid = const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.59999.1.1");
    let subject = Subject::Device { id: "SN-PIPELINE-00001".into(), model_oid };
    let entity = EndEntity::new("device", &profile, subject, &csr.public_key_der);
    let record = entity.sign("device", issuer, not_after, [7; 16], &pki.urls).unwrap();

    let mut g = c.benchmark_group("est-pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1-body-decode-and-csr-check", |b| {
        b.iter(|| {
            let der = enrollment::est::decode_base64_body(black_box(&body)).unwrap();
            enrollment::check_csr(&der).unwrap()
        })
    });
    let mut serial = 0u128;
    g.bench_function("2-certificate-build-and-sign", |b| {
        b.iter(|| {
            serial += 1;
            entity.sign("device", issuer, not_after, serial.to_be_bytes(), &pki.urls).unwrap()
        })
    });
    g.bench_function("3-audit-event-and-leaf-hash", |b| {
        b.iter(|| {
            let event = issuance_event("station:bench", black_box(&record));
            let entries = ca_service::audit::entries_after(41, 1_700_000_000_000_000, [event]);
            entries[0].computed_leaf_hash()
        })
    });
    g.bench_function("4-certs-only-response", |b| {
        b.iter(|| {
            let cms = enrollment::est::certs_only(std::slice::from_ref(black_box(&record.der))).unwrap();
            base64::engine::general_purpose::STANDARD.encode(cms)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);
