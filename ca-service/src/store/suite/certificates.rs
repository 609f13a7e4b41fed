//! The issuance writer and the certificate readers ([`CertificateStore::store_certificates`],
//! [`CertificateReader`]).

use super::*;

pub(super) async fn enrollment_effects_are_atomic_with_the_certificate(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut again = device("d-2", "b-1");
    again.reprovision = true;
    s.add_devices(&[device("d-1", "b-1"), again], event("device.register", "batch:b-1")).await.unwrap();
    let activate = |id: &str, allow| IssuanceEffect::ActivateDevice { device_id: id.into(), allow_reprovision: allow };
    let with = |serial: u8, effect| Issuance { effect: Some(effect), ..issue(cert("device", &[serial], Some("d-1"))) };
    let entries = || async { s.audit_entries(0, 100).await.unwrap().len() };
    let before = entries().await;

    // Two enrollments of one device in one batch: the first wins, the second stores nothing.
    let out = s.store_certificates(&[with(1, activate("d-1", false)), with(2, activate("d-1", false))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert!(matches!(&out[1], IssuanceOutcome::Refused(r) if r.contains("d-1")), "{out:?}");
    assert_eq!(s.get_device("d-1").await.unwrap().unwrap().state, DeviceState::Active);
    assert!(s.get_certificate("device", &[2]).await.unwrap().is_none(), "refused certificate must not be stored");
    assert_eq!(entries().await, before + 1, "only the stored certificate is audited");

    // An active device enrolls again only where re-provisioning is allowed.
    let out = s.store_certificates(&[with(3, activate("d-1", false))]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)));
    let out = s.store_certificates(&[with(4, activate("d-2", true)), with(5, activate("d-2", true))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    let out = s.store_certificates(&[with(6, activate("d-2", true))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored, "re-provisioning of an active device");
    // Re-provisioning replaces the device's earlier certificate.
    let mut reprovisioned = cert("device", &[10], Some("d-2"));
    reprovisioned.device_id = Some("d-2".into());
    let first = Issuance { effect: Some(activate("d-2", true)), ..issue(reprovisioned) };
    let mut again = cert("device", &[11], Some("d-2"));
    again.device_id = Some("d-2".into());
    let second = Issuance { effect: Some(activate("d-2", true)), ..issue(again) };
    assert_eq!(s.store_certificates(&[first]).await.unwrap()[0], IssuanceOutcome::Stored);
    assert_eq!(s.store_certificates(&[second]).await.unwrap()[0], IssuanceOutcome::Stored);
    assert_eq!(s.get_certificate("device", &[10]).await.unwrap().unwrap().status, CertStatus::Superseded);
    assert_eq!(s.get_certificate("device", &[11]).await.unwrap().unwrap().status, CertStatus::Valid);

    // Renewal supersedes the current certificate once; a second renewal of it is refused.
    let supersede = IssuanceEffect::Supersede { issuer: "device".into(), serial: vec![1], revoke: false };
    let out = s.store_certificates(&[with(7, supersede.clone())]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert_eq!(s.get_certificate("device", &[1]).await.unwrap().unwrap().status, CertStatus::Superseded);
    let out = s.store_certificates(&[with(8, supersede)]).await.unwrap();
    assert!(matches!(&out[0], IssuanceOutcome::Refused(r) if r.contains("no longer valid")), "{out:?}");
    assert!(s.get_certificate("device", &[8]).await.unwrap().is_none());
    // After a key exposure the renewed certificate is revoked (superseded) instead, in
    // the same transaction, and the revocation readers see it.
    let before = crate::issuance::unix(std::time::SystemTime::now()) - 1;
    let revoke = IssuanceEffect::Supersede { issuer: "device".into(), serial: vec![7], revoke: true };
    assert_eq!(s.store_certificates(&[with(9, revoke)]).await.unwrap()[0], IssuanceOutcome::Stored);
    let old = s.get_certificate("device", &[7]).await.unwrap().unwrap();
    assert_eq!((old.status, old.revocation_reason), (CertStatus::Revoked, Some(Reason::Superseded)));
    assert!(old.revoked_at.is_some_and(|t| t >= before), "{:?}", old.revoked_at);
    let seen = s.revoked_since(before).await.unwrap();
    assert!(seen.iter().any(|(issuer, serial, _)| issuer == "device" && serial == &[7]), "{seen:?}");

    // A serial clash is still reported as such, and its effect is not applied.
    let mut third = device("d-3", "b-1");
    third.device_id = "d-3".into();
    s.add_devices(&[third], event("device.register", "batch:b-1")).await.unwrap();
    let out = s.store_certificates(&[with(7, activate("d-3", false))]).await.unwrap();
    assert_eq!(out[0], IssuanceOutcome::SerialTaken);
    assert_eq!(s.get_device("d-3").await.unwrap().unwrap().state, DeviceState::Expected);
}

pub(super) async fn compromised_keys_are_refused_when_stored(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut first = cert("device", &[1], None);
    first.public_key_sha256 = "ab".repeat(32);
    s.store_certificates(&[issue(first)]).await.unwrap();
    // Revoked for another reason, the key may be certified again.
    s.revoke_certificate("device", &[1], Reason::Superseded, 1_700_000_000, event("certificate.revoke", "c/1"))
        .await
        .unwrap();
    let mut again = cert("device", &[2], None);
    again.public_key_sha256 = "ab".repeat(32);
    assert_eq!(s.store_certificates(&[issue(again)]).await.unwrap(), vec![IssuanceOutcome::Stored]);
    s.revoke_certificate("device", &[2], Reason::KeyCompromise, 1_700_000_000, event("certificate.revoke", "c/2"))
        .await
        .unwrap();

    let before = s.audit_entries(0, 1000).await.unwrap().len();
    let mut same_key = cert("device", &[3], None);
    same_key.public_key_sha256 = "ab".repeat(32);
    let out = s.store_certificates(&[issue(same_key), issue(cert("device", &[4], None))]).await.unwrap();
    assert_eq!(out, vec![IssuanceOutcome::KeyCompromised, IssuanceOutcome::Stored]);
    assert!(s.get_certificate("device", &[3]).await.unwrap().is_none(), "nothing stored for the compromised key");
    assert_eq!(s.audit_entries(0, 1000).await.unwrap().len(), before + 1, "audited: only the stored one");
}

pub(super) async fn latest_valid_certificate_of_a_profile(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mk = |serial: u8, not_after: i64, status: CertStatus| {
        let mut c = cert("device", &[serial], None);
        c.profile = "ocsp-signer-device".into();
        c.not_after = not_after;
        c.status = status;
        issue(c)
    };
    assert!(s.latest_valid_certificate("device", "ocsp-signer-device").await.unwrap().is_none());
    let batch = [mk(1, 1_000, CertStatus::Valid), mk(2, 3_000, CertStatus::Valid), mk(3, 9_000, CertStatus::Revoked)];
    s.store_certificates(&batch).await.unwrap();
    let latest = s.latest_valid_certificate("device", "ocsp-signer-device").await.unwrap().unwrap();
    assert_eq!(latest.serial, vec![2], "newest valid, not the revoked one");
    assert!(s.latest_valid_certificate("device", "device").await.unwrap().is_none());
}

pub(super) async fn certificate_keys_page_in_id_order(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let batch: Vec<Issuance> = (1..=5u8).map(|i| issue(cert("device", &[i], None))).collect();
    s.store_certificates(&batch).await.unwrap();
    let first = s.certificate_keys(0, 3).await.unwrap();
    let rest = s.certificate_keys(first[2].id, 3).await.unwrap();
    let serials: Vec<Vec<u8>> = first.iter().chain(&rest).map(|k| k.serial.clone()).collect();
    assert_eq!(serials, (1..=5u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(first.iter().chain(&rest).all(|k| k.issuer == "device"));
    assert!(s.certificate_keys(rest[1].id, 3).await.unwrap().is_empty());
}

pub(super) async fn certificate_round_trip(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let plain = cert("device", &[0x01, 0x02, 0xab], Some("d-1"));
    let mut revoked = cert("device", &[0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70], None);
    revoked.status = CertStatus::Revoked;
    revoked.revoked_at = Some(1_750_000_000);
    revoked.revocation_reason = Some(Reason::KeyCompromise);
    revoked.subject = "CN=station-7,O=Example Factory,C=DE".into();
    revoked.profile = "station".into();
    let mut superseded = cert("device", &[0x7f; 20], Some("d-1"));
    superseded.status = CertStatus::Superseded;
    superseded.not_before = -5;
    superseded.not_after = i64::MAX;
    superseded.der = (0..=255u8).cycle().take(1500).collect();

    let outcomes =
        s.store_certificates(&[issue(plain.clone()), issue(revoked.clone()), issue(superseded.clone())]).await.unwrap();
    assert_eq!(outcomes, vec![IssuanceOutcome::Stored; 3]);
    for c in [&plain, &revoked, &superseded] {
        assert_eq!(s.get_certificate("device", &c.serial).await.unwrap().as_ref(), Some(c));
        assert_eq!(s.certificate_by_fingerprint(&c.fingerprint).await.unwrap().as_ref(), Some(c));
    }
    assert_eq!(s.get_certificate("station", &plain.serial).await.unwrap(), None);
    assert_eq!(s.get_certificate("device", &[0x01, 0x02]).await.unwrap(), None);
}

pub(super) async fn serial_taken_in_later_batch(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let first = s.store_certificates(&[issue(cert("device", &[1], None)), issue(cert("device", &[2], None))]).await;
    assert_eq!(first.unwrap(), vec![IssuanceOutcome::Stored; 2]);

    let mut clash = cert("device", &[2], Some("other"));
    clash.der = b"different".to_vec();
    let batch = [issue(cert("device", &[3], None)), issue(clash), issue(cert("device", &[4], None))];
    let outcomes = s.store_certificates(&batch).await.unwrap();
    assert_eq!(outcomes, [IssuanceOutcome::Stored, IssuanceOutcome::SerialTaken, IssuanceOutcome::Stored]);
    // The original keeps its data; the others were stored.
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap(), Some(cert("device", &[2], None)));
    for serial in [[3u8], [4]] {
        assert!(s.get_certificate("device", &serial).await.unwrap().is_some());
    }
    // Audit: ca.init + 2 + 2, no entry for the skipped item.
    let entries = s.audit_entries(0, 100).await.unwrap();
    let targets: Vec<&str> = entries.iter().map(|e| e.event.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "ca:device",
            "certificate:device/01",
            "certificate:device/02",
            "certificate:device/03",
            "certificate:device/04"
        ]
    );
    assert!(verify_log(s, 100).await.is_ok());
}

pub(super) async fn serial_taken_within_batch(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut dup = cert("device", &[0x10], Some("second"));
    dup.der = b"second".to_vec();
    let batch = [
        issue(cert("device", &[0x10], Some("first"))),
        issue(cert("device", &[0x11], None)),
        issue(dup),
        issue(cert("device", &[0x12], None)),
    ];
    let outcomes = s.store_certificates(&batch).await.unwrap();
    use IssuanceOutcome::{SerialTaken, Stored};
    assert_eq!(outcomes, [Stored, Stored, SerialTaken, Stored]);
    let got = s.get_certificate("device", &[0x10]).await.unwrap().unwrap();
    assert_eq!(got.device_id.as_deref(), Some("first"));
    let entries = s.audit_entries(0, 100).await.unwrap();
    assert_eq!(events_of(&entries[1..]), [&batch[0], &batch[1], &batch[3]].map(|i| i.audit.clone()));
    assert_eq!(verify_log(s, 2).await.map(|h| h.0), Ok(4));
}

pub(super) async fn same_serial_other_issuer(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let a = cert("device", &[0x42], Some("d-1"));
    let b = cert("station", &[0x42], None);
    let outcomes = s.store_certificates(&[issue(a.clone()), issue(b.clone())]).await.unwrap();
    assert_eq!(outcomes, vec![IssuanceOutcome::Stored; 2]);
    assert_eq!(s.get_certificate("device", &[0x42]).await.unwrap(), Some(a));
    assert_eq!(s.get_certificate("station", &[0x42]).await.unwrap(), Some(b));
}

pub(super) async fn failed_batch_stores_nothing(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    // The issuer must be a known CA: one bad item fails the whole batch atomically.
    let batch = [issue(cert("device", &[1], None)), issue(cert("no-such-ca", &[2], None))];
    let err = s.store_certificates(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(s.get_certificate("device", &[1]).await.unwrap(), None);
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
    // The store is still usable (no pooled connection was left inside the failed
    // transaction) and the chain intact.
    for _ in 0..4 {
        assert_eq!(s.get_certificate("device", &[1]).await.unwrap(), None);
    }
    assert_eq!(s.store_certificates(&batch[..1]).await.unwrap(), [IssuanceOutcome::Stored]);
    assert_eq!(verify_log(s, 100).await.map(|h| h.0), Ok(2));
}

pub(super) async fn certificates_for_device_newest_first(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.store_certificates(&[issue(cert("device", &[1], Some("d-1"))), issue(cert("device", &[2], Some("d-2")))])
        .await
        .unwrap();
    let mut renewed = cert("device", &[3], Some("d-1"));
    renewed.not_before += 100;
    s.store_certificates(&[issue(renewed), issue(cert("device", &[4], None))]).await.unwrap();
    s.store_certificates(&[issue(cert("device", &[5], Some("d-1"))), issue(cert("device", &[6], Some("d-1")))])
        .await
        .unwrap();

    let serials: Vec<Vec<u8>> = s.certificates_for_device("d-1").await.unwrap().into_iter().map(|c| c.serial).collect();
    assert_eq!(serials, [vec![6], vec![5], vec![3], vec![1]]);
    assert_eq!(s.certificates_for_device("d-2").await.unwrap().len(), 1);
    assert!(s.certificates_for_device("d-3").await.unwrap().is_empty());
}

/// 8 tasks × 50 certificates, in batches of 1–5, all at once.
pub(super) async fn concurrent_store_certificates(h: &Harness) {
    create_ca(h.store(), "device").await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8u8 {
        let store = Arc::clone(&h.store);
        tasks.spawn(async move {
            let certs: Vec<Issuance> = (0..50u8).map(|i| issue(cert("device", &[t, i, 0xc0], None))).collect();
            for chunk in certs.chunks(usize::from(t % 5) + 1) {
                let outcomes = store.store_certificates(chunk).await.unwrap();
                assert!(outcomes.iter().all(|o| *o == IssuanceOutcome::Stored));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let s = h.store();
    for t in 0..8u8 {
        for i in 0..50u8 {
            assert!(s.get_certificate("device", &[t, i, 0xc0]).await.unwrap().is_some());
        }
    }
    let entries = all_entries(s, 64).await;
    assert_eq!(entries.len(), 401);
    assert!(entries.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1));
    assert_eq!(verify_log(s, 64).await.map(|h| h.0), Ok(401));
}

/// Not a pass/fail test: prints certificates/s for 16 concurrent callers storing
/// batches of 128 (as the upstream batching writer would), plus single-caller numbers.
pub(super) async fn throughput(h: &Harness) {
    create_ca(h.store(), "device").await;
    for (callers, batch, batches) in [(1usize, 128usize, 20usize), (4, 128, 10), (16, 64, 5), (16, 256, 2)] {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..callers {
            let store = Arc::clone(&h.store);
            tasks.spawn(async move {
                for b in 0..batches {
                    let items: Vec<Issuance> = (0..batch)
                        .map(|i| {
                            let serial: [u8; 16] = rand::random();
                            let mut c = cert("device", &serial, Some(&format!("dev-{caller}-{b}-{i}")));
                            c.der = (0..700).map(|_| rand::random::<u8>()).collect();
                            issue(c)
                        })
                        .collect();
                    store.store_certificates(&items).await.unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let n = callers * batch * batches;
        let secs = start.elapsed().as_secs_f64();
        println!("{callers:>2} callers × batches of {batch:>3}: {n} certs in {secs:.2}s = {:.0}/s", n as f64 / secs);
    }
    assert!(verify_log(h.store(), 1000).await.is_ok());
}
