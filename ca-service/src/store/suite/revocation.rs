//! Revocation ([`CertificateStore`]'s revoke calls and [`RevocationReader`]).

use super::*;

pub(super) async fn revocation_is_audited_once_and_feeds_the_crl(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let mut expired = cert("device", &[3], None);
    expired.not_after = 100;
    let batch = [
        issue(cert("device", &[1], None)),
        issue(cert("device", &[2], None)),
        issue(expired),
        issue(cert("station", &[1], None)),
    ];
    s.store_certificates(&batch).await.unwrap();
    let before = s.audit_entries(0, 100).await.unwrap().len();

    let r = s
        .revoke_certificate(
            "device",
            &[2],
            Reason::KeyCompromise,
            1_700_000_000,
            event("certificate.revoke", "certificate:device/02"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.revoked_at, r.revocation_reason),
        (CertStatus::Revoked, Some(1_700_000_000), Some(Reason::KeyCompromise))
    );
    assert_eq!(s.get_certificate("device", &[2]).await.unwrap().unwrap().status, CertStatus::Revoked);
    let err = s
        .revoke_certificate("device", &[2], Reason::KeyCompromise, 1_700_000_001, event("certificate.revoke", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s
        .revoke_certificate("device", &[9], Reason::KeyCompromise, 1_700_000_001, event("certificate.revoke", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    s.revoke_certificate(
        "device",
        &[3],
        Reason::Superseded,
        1_700_000_002,
        event("certificate.revoke", "certificate:device/03"),
    )
    .await
    .unwrap();
    s.revoke_certificate(
        "station",
        &[1],
        Reason::Unspecified,
        1_700_000_003,
        event("certificate.revoke", "certificate:station/01"),
    )
    .await
    .unwrap();
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), before + 3, "one entry per revocation");

    // The CRL takes the issuer's unexpired revocations only.
    let crl = s.revoked_for_crl("device", 1_000, None, None).await.unwrap();
    assert_eq!(crl, vec![(vec![2], 1_700_000_000, Some(Reason::KeyCompromise))]);
    assert_eq!(s.revoked_for_crl("station", 1_000, None, None).await.unwrap().len(), 1);

    // CRL numbers are monotonic per issuer and survive a second store instance.
    assert_eq!(s.next_crl_number("device").await.unwrap(), 1);
    assert_eq!(s.next_crl_number("device").await.unwrap(), 2);
    assert_eq!(s.next_crl_number("station").await.unwrap(), 1);
    let other = h.backend.second_instance().await;
    assert_eq!(other.next_crl_number("device").await.unwrap(), 3);
}

pub(super) async fn revoking_a_device_revokes_all_its_certificates(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.add_devices(&[device("d-1", "b"), device("d-2", "b")], event("device.register", "batch:b")).await.unwrap();
    let mut superseded = cert("device", &[1], Some("d-1"));
    superseded.status = CertStatus::Superseded;
    let mut compromised = cert("device", &[2], Some("d-1"));
    compromised.public_key_sha256 = "ab".repeat(32);
    let batch = [issue(superseded), issue(compromised), issue(cert("device", &[3], Some("d-2")))];
    s.store_certificates(&batch).await.unwrap();
    assert!(!s.public_key_compromised(&"ab".repeat(32)).await.unwrap());

    let before = s.audit_entries(0, 100).await.unwrap().len();
    let revoked = s
        .revoke_device("d-1", Reason::KeyCompromise, 1_700_000_000, event("device.revoke", "device:d-1"))
        .await
        .unwrap();
    let mut serials: Vec<Vec<u8>> = revoked.iter().map(|c| c.serial.clone()).collect();
    serials.sort();
    assert_eq!(serials, vec![vec![1], vec![2]], "superseded certificates are revoked too");
    assert_eq!(s.get_device("d-1").await.unwrap().unwrap().state, DeviceState::Revoked);
    for serial in [[1u8], [2]] {
        let c = s.get_certificate("device", &serial).await.unwrap().unwrap();
        assert_eq!((c.status, c.revocation_reason), (CertStatus::Revoked, Some(Reason::KeyCompromise)));
    }
    assert_eq!(
        s.get_certificate("device", &[3]).await.unwrap().unwrap().status,
        CertStatus::Valid,
        "other devices untouched"
    );
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), before + 1);
    assert!(s.public_key_compromised(&"ab".repeat(32)).await.unwrap(), "keyCompromise blocks the key");
    let err =
        s.revoke_device("nope", Reason::KeyCompromise, 1, event("device.revoke", "device:nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub(super) async fn revoking_a_batch_or_a_model_revokes_exactly_its_devices(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut other_model = device("m-1", "b2");
    other_model.model = "gateway-v1".into();
    let devices = [device("a-1", "b1"), device("a-2", "b1"), device("c-1", "b2"), other_model];
    s.add_devices(&devices, event("device.register", "batches")).await.unwrap();
    let certs: Vec<Issuance> = ["a-1", "a-2", "c-1", "m-1"]
        .iter()
        .enumerate()
        .map(|(i, d)| issue(cert("device", &[i as u8 + 1], Some(d))))
        .collect();
    s.store_certificates(&certs).await.unwrap();

    let (n, revoked) = s
        .revoke_devices(
            &DeviceSelector::Batch("b1".into()),
            Reason::CessationOfOperation,
            1_700_000_000,
            event("device.revoke", "batch:b1"),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(revoked.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(), [vec![1], vec![2]]);
    for d in ["a-1", "a-2"] {
        assert_eq!(s.get_device(d).await.unwrap().unwrap().state, DeviceState::Revoked);
    }
    assert_eq!(s.get_device("c-1").await.unwrap().unwrap().state, DeviceState::Expected, "other batch untouched");
    assert_eq!(s.get_certificate("device", &[3]).await.unwrap().unwrap().status, CertStatus::Valid);

    let (n, revoked) = s
        .revoke_devices(
            &DeviceSelector::Model("gateway-v1".into()),
            Reason::CessationOfOperation,
            1_700_000_000,
            event("device.revoke", "model"),
        )
        .await
        .unwrap();
    let expected = RevokedCert {
        issuer: "device".into(),
        serial: vec![4],
        device_id: Some("m-1".into()),
        profile: "device".into(),
        not_after: 1_800_000_000,
        revoked_at: 1_700_000_000,
        reason: Some(Reason::CessationOfOperation),
        crl_shard: 0,
    };
    assert_eq!((n, revoked), (1, vec![expected]), "what publishing and the answer need");
    assert_eq!(s.get_certificate("device", &[3]).await.unwrap().unwrap().status, CertStatus::Valid);
    let err = s
        .revoke_devices(
            &DeviceSelector::Batch("none".into()),
            Reason::CessationOfOperation,
            1,
            event("device.revoke", "b"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Reasons are stored as RFC 5280 codes; a code RFC 5280 does not define (7 is
/// unused) is corruption, reported by every read of it, never silently dropped.
pub(super) async fn an_unknown_reason_code_is_corrupt(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.store_certificates(&[issue(cert("device", &[1], None))]).await.unwrap();
    s.revoke_certificate("device", &[1], Reason::KeyCompromise, 1_700_000_000, event("certificate.revoke", "c"))
        .await
        .unwrap();
    h.backend.exec_sql("UPDATE certificates SET revocation_reason = 7").await;
    let err = s.get_certificate("device", &[1]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("reason code 7")), "{err:?}");
    let err = s.revoked_for_crl("device", 0, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}
