//! The transparency log through the library, on both stores: checkpoints the job
//! signs verify with the verifier key, later ones are consistent with earlier ones,
//! inclusion proofs of entries lead to them, and a tree edited below a signed
//! checkpoint is never signed again. Also the checkpoint signing rate (ignored: a
//! measurement).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use ca_service::audit::AuditEvent;
use ca_service::transparency::{ensure_key, job, tree, TransparencyLog};
use common::{Backend, Env};

fn event(i: usize) -> AuditEvent {
    AuditEvent::success("cli:test", "certificate.issue", format!("certificate:device/{i:04x}"))
}

async fn log_checks(backend: Backend) {
    let env = Env::new(backend).await;
    let vkey = ensure_key(&env.config, env.store.as_ref(), &env.keys, "test").await.unwrap();
    let verifier = tlog::Verifier::parse(&vkey).unwrap();
    let log = TransparencyLog::open(&env.config, env.store.clone(), &env.keys).await.unwrap();
    let origin = log.origin().to_string();
    let mut signed = Vec::new();
    // Sizes across tile boundaries: 1 (key creation), then to 300, 600, 70_000 … kept small.
    for target in [1usize, 300, 513, 1000] {
        let have = env.store.audit_entries(0, 100_000).await.unwrap().len();
        let events: Vec<AuditEvent> = (have..target).map(event).collect();
        env.store.append_audit(&events).await.unwrap();
        let cp = job::round(&log).await.unwrap();
        let text = tlog::open_note(&cp.note, std::slice::from_ref(&verifier)).unwrap();
        let parsed = tlog::Checkpoint::parse(&text).unwrap();
        assert_eq!((parsed.origin.as_str(), parsed.size, parsed.root), (origin.as_str(), target as u64, cp.root));
        signed.push(parsed);
    }
    let entries = env.store.audit_entries(0, 100_000).await.unwrap();
    let leaves: Vec<tlog::Hash> = entries.iter().map(|e| e.computed_leaf_hash()).collect();
    for cp in &signed {
        assert_eq!(cp.root, tlog::subtree_hash(&leaves[..cp.size as usize]), "root at {}", cp.size);
    }
    // Consistency from each checkpoint to the last, from the stored tiles.
    let last = signed.last().unwrap();
    for old in &signed[..signed.len() - 1] {
        let tiles =
            tree::read_tiles(env.store.as_ref(), &tlog::tiles_for_consistency(old.size, last.size)).await.unwrap();
        let proof = tiles.consistency_proof(old.size, last.size).unwrap();
        tlog::verify_consistency(old.size, last.size, &old.root, &last.root, &proof).unwrap();
    }
    // Inclusion proofs (tlog-proof) of entries lead to the newest checkpoint.
    for e in [&entries[0], &entries[255], &entries[256], &entries[999]] {
        let proof = log.prove(e).await.unwrap();
        let parsed = tlog::TlogProof::parse(&proof.to_text()).unwrap();
        let cp = parsed
            .verify(&tlog::leaf_hash(parsed.extra.as_ref().unwrap()), std::slice::from_ref(&verifier), &origin)
            .unwrap();
        assert_eq!(cp.size, 1000);
        assert_eq!(parsed.extra.as_deref(), Some(e.leaf_bytes().as_slice()));
    }
    // A stored node rewritten below the signed size: the job refuses to sign again.
    env.store.append_audit(&[event(5000)]).await.unwrap();
    let bad = [[0u8; 32]; 1];
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(env.dir.path().join("pki.db")).unwrap();
            conn.execute("UPDATE log_nodes SET hash = ?1 WHERE level = 1 AND idx = 1", [bad[0].as_slice()]).unwrap();
        }
        Backend::Postgres => {
            let db = env.db.as_ref().unwrap();
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .execute("UPDATE log_nodes SET hash = $1 WHERE level = 1 AND idx = 1", &[&bad[0].as_slice()])
                .await
                .unwrap();
        }
    }
    let err = job::round(&log).await.unwrap_err().to_string();
    assert!(err.contains("does not extend checkpoint 1000"), "{err}");
    assert_eq!(env.store.latest_checkpoint().await.unwrap().unwrap().size, 1000);
}

#[tokio::test]
async fn sqlite_log_checkpoints_and_proofs() {
    log_checks(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_log_checkpoints_and_proofs() {
    log_checks(Backend::Postgres).await;
}

/// Checkpoints per second when every round has new entries (append one, sign), and the
/// signature alone. `cargo test --release -p ca-service --test transparency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn checkpoint_signing_rate() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let env = Env::new(backend).await;
        ensure_key(&env.config, env.store.as_ref(), &env.keys, "test").await.unwrap();
        let log = TransparencyLog::open(&env.config, env.store.clone(), &env.keys).await.unwrap();
        let events: Vec<AuditEvent> = (0..100_000).map(event).collect();
        for chunk in events.chunks(5000) {
            env.store.append_audit(chunk).await.unwrap();
        }
        job::round(&log).await.unwrap();
        let rounds = 300;
        let t = Instant::now();
        for i in 0..rounds {
            env.store.append_audit(&[event(i)]).await.unwrap();
            job::round(&log).await.unwrap();
        }
        let per = t.elapsed() / rounds as u32;
        println!(
            "{backend:?}: {:.0} checkpoints/s at 100k entries (append 1 entry + round: {per:?})",
            1.0 / per.as_secs_f64()
        );
    }
}
