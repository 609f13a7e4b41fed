//! The hierarchy ([`CaStore`]).

use super::*;

pub(super) async fn ca_create_get_list(h: &Harness) {
    let s = h.store();
    let root = ca("identity-root", None);
    let device = ca("device", Some("identity-root"));
    let station = ca("station", Some("identity-root"));
    let update = ca("update-root", None);
    for c in [&root, &device, &station, &update] {
        s.create_ca(c, event("ca.init", &format!("ca:{}", c.name))).await.unwrap();
    }
    assert_eq!(s.get_ca("device").await.unwrap(), Some(device.clone()));
    assert_eq!(s.get_ca("identity-root").await.unwrap(), Some(root.clone()));
    assert_eq!(s.get_ca("nope").await.unwrap(), None);
    // Creation order, not name order.
    assert_eq!(s.list_cas().await.unwrap(), vec![root, device, station, update]);
}

pub(super) async fn ca_duplicate_is_already_exists(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let mut other = ca("device", None);
    other.key_label = "other".into();
    let err = s.create_ca(&other, event("ca.init", "ca:device")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("device")), "{err:?}");
    // The original is untouched and the refused write left no audit entry.
    assert_eq!(s.get_ca("device").await.unwrap(), Some(ca("device", None)));
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
}

pub(super) async fn ca_update_certificate(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    s.update_ca_certificate("device", b"renewed", None, event("ca.renew", "ca:device")).await.unwrap();
    let got = s.get_ca("device").await.unwrap().unwrap();
    assert_eq!(got.cert_der, b"renewed");
    assert_eq!(got.key_label, "device-key");
    assert_eq!(got.parent, None);

    let err = s.update_ca_certificate("nope", b"x", None, event("ca.renew", "ca:nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(ref m) if m.contains("nope")), "{err:?}");
    // Re-parenting (an import signed by another stored CA) is recorded.
    create_ca(s, "root").await;
    s.update_ca_certificate("device", b"signed-by-root", Some("root"), event("ca.import", "ca:device")).await.unwrap();
    assert_eq!(s.get_ca("device").await.unwrap().unwrap().parent.as_deref(), Some("root"));
    let actions: Vec<String> = s.audit_entries(0, 100).await.unwrap().into_iter().map(|e| e.event.action).collect();
    assert_eq!(actions, ["ca.init", "ca.renew", "ca.init", "ca.import"]);
}

pub(super) async fn ca_generations_keep_their_rollover_fields_and_are_destroyed_once(h: &Harness) {
    let s = h.store();
    create_ca(s, "root").await;
    let next = CaRecord {
        issues_from: Some(1_900_000_000),
        old_with_new: Some(b"old-with-new".to_vec()),
        new_with_old: Some(b"new-with-old".to_vec()),
        ..ca("root.2", None)
    };
    s.create_ca(&next, event("ca.rollover", "ca:root.2")).await.unwrap();
    assert_eq!(s.get_ca("root.2").await.unwrap(), Some(next.clone()));
    assert_eq!(s.list_cas().await.unwrap(), vec![ca("root", None), next]);

    // The latest expiry of what a generation signed, its OCSP signer's left out.
    assert_eq!(s.last_expiry("root", "ocsp").await.unwrap(), None);
    let mut ocsp = cert("root", &[1], None);
    (ocsp.profile, ocsp.not_after) = ("ocsp".into(), 2_000_000_000);
    let mut other = cert("root.2", &[3], None);
    other.not_after = 2_100_000_000;
    for c in [cert("root", &[2], None), ocsp, other] {
        s.store_certificates(&[issue(c)]).await.unwrap();
    }
    assert_eq!(s.last_expiry("root", "ocsp").await.unwrap(), Some(1_800_000_000));

    s.destroy_ca("root", 1_850_000_000, event("ca.destroy", "ca:root")).await.unwrap();
    assert_eq!(s.get_ca("root").await.unwrap().unwrap().destroyed_at, Some(1_850_000_000));
    // Once: a second destroy (or of an unknown CA) is NotFound and audits nothing.
    let entries = s.audit_entries(0, 100).await.unwrap().len();
    for name in ["root", "nope"] {
        let err = s.destroy_ca(name, 1_860_000_000, event("ca.destroy", "ca:x")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    assert_eq!(s.get_ca("root").await.unwrap().unwrap().destroyed_at, Some(1_850_000_000));
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), entries);
}

pub(super) async fn hierarchy_is_stored_whole_or_not_at_all(h: &Harness) {
    let s = h.store();
    let cas = [
        (ca("root", None), event("ca.create", "ca:root")),
        (ca("device", Some("root")), event("ca.create", "ca:device")),
    ];
    // The second OCSP certificate repeats the first one's serial: the whole ceremony fails.
    let clash = [issue(cert("device", &[7], None)), issue(cert("device", &[7], None))];
    let err = s.create_hierarchy(&cas, &clash).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("07")), "{err:?}");
    assert!(s.list_cas().await.unwrap().is_empty(), "no CA may remain from a failed ceremony");
    assert!(s.audit_entries(0, 10).await.unwrap().is_empty());

    let ocsp = [issue(cert("device", &[7], None))];
    s.create_hierarchy(&cas, &ocsp).await.unwrap();
    let names: Vec<String> = s.list_cas().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["root", "device"], "parents first, in creation order");
    assert!(s.get_certificate("device", &[7]).await.unwrap().is_some());
    let actions: Vec<String> = s.audit_entries(0, 10).await.unwrap().into_iter().map(|e| e.event.action).collect();
    assert_eq!(actions, ["ca.create", "ca.create", "certificate.issue"]);
}
