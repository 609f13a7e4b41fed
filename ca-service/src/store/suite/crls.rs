//! CRL shards, deltas and published CRLs ([`RevocationReader`], [`CrlStore`]).

use super::*;

pub(super) async fn crl_shards_deltas_and_published_crls(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut certs = Vec::new();
    for (serial, shard) in [(1u8, 0u32), (2, 1), (3, 1), (4, 0)] {
        let mut c = cert("device", &[serial], None);
        c.crl_shard = shard;
        certs.push(issue(c));
    }
    s.store_certificates(&certs).await.unwrap();
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap().unwrap().crl_shard, 1, "shard round trip");
    // Revoked out of serial order (and across shards), so a store that returned rows
    // in the order it found them would not pass for serial order by chance.
    for (serial, at) in [(3u8, 2_000), (1, 1_000), (4, 2_000), (2, 1_000)] {
        s.revoke_certificate("device", &[serial], Reason::Unspecified, at, event("certificate.revoke", "c"))
            .await
            .unwrap();
    }
    let serials = |v: Vec<(Vec<u8>, i64, Option<Reason>)>| v.into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
    let all = serials(s.revoked_for_crl("device", 0, None, None).await.unwrap());
    assert_eq!(all, [vec![1], vec![2], vec![3], vec![4]], "serial order");
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(1), None).await.unwrap()), [vec![2], vec![3]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(0), None).await.unwrap()), [vec![1], vec![4]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, None, Some(1_500)).await.unwrap()), [vec![3], vec![4]], "delta");
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(0), Some(1_500)).await.unwrap()), [vec![4]]);
    assert_eq!(serials(s.revoked_for_crl("device", 0, Some(1), Some(1_500)).await.unwrap()), [vec![3]]);

    let crl = |number: u64, der: &[u8]| PublishedCrl {
        ca: "device".into(),
        name: "full".into(),
        number,
        base_number: None,
        this_update: 10,
        next_update: 20,
        der: der.to_vec(),
    };
    assert!(s.published_crl("device", "full").await.unwrap().is_none());
    s.publish_crls(&[crl(5, b"five")], event("crl.publish", "crls")).await.unwrap();
    // An older number (a slower instance) never replaces a newer CRL.
    s.publish_crls(&[crl(4, b"four")], event("crl.publish", "crls")).await.unwrap();
    assert_eq!(s.published_crl("device", "full").await.unwrap().unwrap().der, b"five");
    s.publish_crls(&[crl(6, b"six")], event("crl.publish", "crls")).await.unwrap();
    assert_eq!(s.published_crl("device", "full").await.unwrap().unwrap().number, 6);
    let head = s.published_crl_head("device", "full").await.unwrap();
    assert_eq!(head, Some(CrlHead { number: 6, this_update: 10, next_update: 20 }));
    assert!(s.published_crl_head("device", "delta").await.unwrap().is_none());

    // The job lock: while held, a second instance does not get it.
    let lock = s.try_job_lock("test-job").await.unwrap();
    assert!(lock.is_some());
    // Kept across rounds, it answers whether its session still holds it.
    assert!(lock.as_ref().unwrap().still_held().await, "a fresh lock is held");
    let other = h.backend.second_instance().await;
    let exclusive = other.try_job_lock("test-job").await.unwrap();
    if h.backend.shared_by_processes() {
        assert!(exclusive.is_none(), "two instances held the job lock");
        drop(lock);
        assert!(other.try_job_lock("test-job").await.unwrap().is_some(), "released on drop");
    }
}
