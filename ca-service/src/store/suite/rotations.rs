use super::*;

/// A rotation of batch `rb` opened at 2,000 s: r-1 renewed after it (replaced), r-2 did
/// not (pending), r-3 never enrolled (not counted), r-4 is in another batch.
pub(super) async fn rotations_count_progress_and_revoke_the_pending_once(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let devices = [device("r-1", "rb"), device("r-2", "rb"), device("r-3", "rb"), device("r-4", "other")];
    s.add_devices(&devices, event("device.register", "batch:rb")).await.unwrap();
    let old = [
        issue(cert("device", &[1], Some("r-1"))),
        issue(cert("device", &[2], Some("r-2"))),
        issue(cert("device", &[3], Some("r-4"))),
    ];
    s.store_certificates(&old).await.unwrap();
    h.backend.exec_sql("UPDATE certificates SET created_at = 1000000000").await;
    h.backend.exec_sql("UPDATE devices SET state = 'active' WHERE device_id IN ('r-1', 'r-2', 'r-4')").await;

    let which = DeviceSelector::Batch("rb".into());
    let new = NewRotation {
        which: which.clone(),
        opened_at: 2_000,
        deadline: 3_000,
        after_deadline: AfterDeadline::Revoke,
        new_key: true,
        reason: "test".into(),
        created_by: "cli:test".into(),
    };
    let nobody = NewRotation { which: DeviceSelector::Batch("none".into()), ..new.clone() };
    assert!(matches!(
        s.create_rotation(&nobody, event("rotation.create", "rotation:new")).await,
        Err(StoreError::NotFound(_))
    ));
    let r = s.create_rotation(&new, event("rotation.create", "rotation:new")).await.unwrap();
    assert_eq!(s.get_rotation(r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(s.list_rotations(10).await.unwrap(), vec![r.clone()]);
    // r-1's replacement, issued now (long after 2,000 s).
    s.store_certificates(&[issue(cert("device", &[4], Some("r-1")))]).await.unwrap();

    assert_eq!(s.device_rotations("r-2", "rb", "sensor-v2").await.unwrap(), vec![r.clone()]);
    assert!(s.device_rotations("r-4", "other", "sensor-v2").await.unwrap().is_empty());
    assert_eq!(s.rotation_progress(&r).await.unwrap(), RotationProgress { devices: 2, replaced: 1, pending: 1 });
    assert_eq!(s.rotation_pending(&r, "", 10).await.unwrap(), vec!["r-2".to_string()]);
    assert!(s.rotation_pending(&r, "r-2", 10).await.unwrap().is_empty());

    assert!(s.due_rotations(2_999).await.unwrap().is_empty());
    assert_eq!(s.due_rotations(3_000).await.unwrap().len(), 1);
    let (closed, revoked) = s
        .close_rotation(r.id, 3_000, event("rotation.deadline", &format!("rotation:{}", r.id)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((closed.closed_at, closed.revoked), (Some(3_000), Some(1)));
    assert_eq!(revoked.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(), vec![vec![2u8]]);
    let stored = s.get_certificate("device", &[2]).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.revocation_reason), (CertStatus::Revoked, Some(Reason::Superseded)));
    for serial in [1u8, 3, 4] {
        assert_eq!(s.get_certificate("device", &[serial]).await.unwrap().unwrap().status, CertStatus::Valid);
    }
    // Once: a second instance (or a second tick) finds it closed.
    assert!(s.close_rotation(r.id, 3_001, event("rotation.deadline", "rotation:x")).await.unwrap().is_none());
    assert!(s.due_rotations(4_000).await.unwrap().is_empty());
    let query = AuditQuery { target: Some(format!("rotation:{}", r.id)), ..AuditQuery::default() };
    let audit = s.find_audit(&query, None, 10).await.unwrap();
    assert_eq!(audit.len(), 2, "created and deadline, each audited once");
}
