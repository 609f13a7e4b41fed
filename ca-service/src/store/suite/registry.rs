//! Devices, stations, enrollment requests and `enrollment_contexts` ([`RegistryStore`]).

use super::*;

pub(super) async fn enrollment_requests_wait_for_one_final_decision(h: &Harness) {
    let s = h.store();
    let req = |id: &str| EnrollmentRequest {
        id: id.into(),
        profile: "device".into(),
        device_id: format!("dev-{id}"),
        requester: "station:line-1".into(),
        status: RequestStatus::Pending,
        decided_by: None,
        issued: None,
    };
    let first = s.submit_enrollment_request(&req("a"), event("est.request", "request:a")).await.unwrap();
    assert_eq!(first, req("a"));
    // The station's retry finds the same request; only the first submission is audited.
    let again = s.submit_enrollment_request(&req("a"), event("est.request", "request:a")).await.unwrap();
    assert_eq!(again.status, RequestStatus::Pending);
    assert_eq!(s.audit_entries(0, 10).await.unwrap().len(), 1);

    s.submit_enrollment_request(&req("b"), event("est.request", "request:b")).await.unwrap();
    s.decide_enrollment_request("a", true, "cli:alice", event("est.approve", "request:a")).await.unwrap();
    s.decide_enrollment_request("b", false, "cli:alice", event("est.reject", "request:b")).await.unwrap();
    let err = s.decide_enrollment_request("b", true, "cli:bob", event("est.approve", "request:b")).await.unwrap_err();
    assert!(err.to_string().contains("already rejected"), "{err}");
    let err = s.decide_enrollment_request("zz", true, "cli:bob", event("est.approve", "request:zz")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // A rejected request cannot be issued; an approved one is, once, in the
    // transaction that stores its certificate (a later item claiming it again, in the
    // same batch or a later one, is refused and nothing of it is stored).
    create_ca(s, "device").await;
    let fulfil =
        |serial: u8, id: &str| Issuance { fulfils_request: Some(id.into()), ..issue(cert("device", &[serial], None)) };
    let out = s.store_certificates(&[fulfil(1, "b"), fulfil(9, "a"), fulfil(2, "a")]).await.unwrap();
    assert_eq!(
        out,
        [
            IssuanceOutcome::Refused("enrollment request 'b' is no longer approved".into()),
            IssuanceOutcome::Stored,
            IssuanceOutcome::Refused("enrollment request 'a' is no longer approved".into()),
        ]
    );
    let again = s.store_certificates(&[fulfil(3, "a")]).await.unwrap();
    assert!(matches!(again[..], [IssuanceOutcome::Refused(_)]), "{again:?}");
    for refused in [1u8, 2, 3] {
        assert_eq!(s.get_certificate("device", &[refused]).await.unwrap(), None, "serial {refused} was stored");
    }
    let a = s.get_enrollment_request("a").await.unwrap().unwrap();
    assert_eq!(a.status, RequestStatus::Issued);
    assert_eq!(a.decided_by.as_deref(), Some("cli:alice"));
    assert_eq!(a.issued, Some(("device".to_string(), vec![9])));
    let b = s.get_enrollment_request("b").await.unwrap().unwrap();
    assert_eq!((b.status, b.issued), (RequestStatus::Rejected, None));
    let rejected = s.list_enrollment_requests(Some(RequestStatus::Rejected)).await.unwrap();
    assert_eq!(rejected.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(s.list_enrollment_requests(None).await.unwrap().len(), 2);
    assert_eq!(
        s.audit_entries(0, 10).await.unwrap().len(),
        6,
        "submit a, submit b, approve a, reject b, the CA, the one issued certificate"
    );
}

/// A certificate delivered to a station is found again by its delivery key (the
/// CSR's SHA-256 and the station), the newest first, only within the window and only
/// for that station; certificates stored without one are never found this way.
pub(super) async fn deliveries_are_found_by_request_and_station(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let delivered_to = |device: &str, serial: u8, not_before: i64, request: &str, station: &str| {
        let mut c = cert("device", &[serial], Some(device));
        c.not_before = not_before;
        let delivery = DeliveryKey { request_sha256: request.into(), station: station.into() };
        Issuance { delivery: Some(delivery), ..issue(c) }
    };
    let delivered = |serial, not_before, request, station| delivered_to("d-1", serial, not_before, request, station);
    let batch = [
        delivered(1, 1_700_000_000, "req-1", "line-1"),
        delivered(2, 1_700_000_500, "req-1", "line-1"),
        delivered(3, 1_700_000_900, "req-1", "line-2"),
        issue(cert("device", &[4], Some("d-1"))),
        delivered_to("d-2", 5, 1_700_000_000, "req-2", "line-1"),
    ];
    assert!(s.store_certificates(&batch).await.unwrap().iter().all(|o| *o == IssuanceOutcome::Stored));
    let earlier = |request: &str, station: &str, since: i64| EarlierDelivery {
        device_id: "d-1".into(),
        request_sha256: request.into(),
        station: station.into(),
        since,
    };
    let serial = |c: Option<CertRecord>| c.map(|c| c.serial);
    assert_eq!(serial(s.delivered_certificate(&earlier("req-1", "line-1", 0)).await.unwrap()), Some(vec![2]));
    assert_eq!(serial(s.delivered_certificate(&earlier("req-1", "line-2", 0)).await.unwrap()), Some(vec![3]));
    assert_eq!(s.delivered_certificate(&earlier("req-1", "line-1", 1_700_000_501)).await.unwrap(), None);
    assert_eq!(s.delivered_certificate(&earlier("req-1", "line-3", 0)).await.unwrap(), None);
    assert_eq!(s.delivered_certificate(&earlier("req-2", "line-1", 0)).await.unwrap(), None);

    // The batched lookup finds the same, each lookup its own — for an active device
    // only (a device never enrolled has no earlier delivery to look for).
    let mut active = device("d-1", "b");
    active.state = DeviceState::Active;
    s.add_devices(&[active, device("d-2", "b")], event("device.register", "batch:b")).await.unwrap();
    let lookup = |device: &str, earlier: Option<EarlierDelivery>| EnrollmentLookup {
        device_id: Some(device.into()),
        earlier,
        ..EnrollmentLookup::default()
    };
    let mut expected_device = earlier("req-2", "line-1", 0);
    expected_device.device_id = "d-2".into();
    assert_eq!(serial(s.delivered_certificate(&expected_device).await.unwrap()), Some(vec![5]));
    let lookups = [
        lookup("d-1", Some(earlier("req-1", "line-1", 0))),
        lookup("d-1", None),
        lookup("d-1", Some(earlier("req-1", "line-2", 1_700_000_901))),
        lookup("d-1", Some(earlier("req-1", "line-2", 0))),
        lookup("d-2", Some(expected_device)),
    ];
    let found: Vec<_> = s.enrollment_contexts(&lookups).await.unwrap().into_iter().map(|c| serial(c.earlier)).collect();
    assert_eq!(found, [Some(vec![2]), None, None, Some(vec![3]), None]);
}

pub(super) async fn stations_add_get_list(h: &Harness) {
    let s = h.store();
    let st = StationRecord {
        name: "line-1".into(),
        enabled: true,
        models: vec!["sensor-v2".into()],
        batches: vec!["*".into()],
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
    };
    s.add_station(&st, event("station.add", "station:line-1")).await.unwrap();
    assert_eq!(s.get_station("line-1").await.unwrap(), Some(st.clone()));
    let err = s.add_station(&st, event("station.add", "station:line-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.list_stations().await.unwrap(), vec![st.clone()]);
    assert!(st.may_enroll(&device("d-1", "any-batch")));
    let mut other = device("d-1", "b-1");
    other.model = "gateway".into();
    assert!(!st.may_enroll(&other));
    assert!(s.get_station("nope").await.unwrap().is_none());
}

pub(super) async fn enrollment_contexts_read_what_each_key_names(h: &Harness) {
    let s = h.store();
    create_ca(s, "station").await;
    create_ca(s, "device").await;
    let st = StationRecord {
        name: "line-1".into(),
        enabled: false,
        models: vec!["sensor-v2".into(), "gateway".into()],
        batches: vec!["*".into()],
        secret_hash: None,
    };
    s.add_station(&st, event("station.add", "station:line-1")).await.unwrap();
    s.add_devices(&[device("d-1", "b")], event("device.register", "batch:b")).await.unwrap();
    let mut station_cert = cert("station", &[7], None);
    station_cert.profile = "station".into();
    station_cert.status = CertStatus::Revoked;
    station_cert.revoked_at = Some(1_700_000_001);
    station_cert.revocation_reason = Some(Reason::KeyCompromise);
    s.store_certificates(&[issue(station_cert.clone())]).await.unwrap();

    let all = EnrollmentLookup {
        client_fingerprint: Some(station_cert.fingerprint.clone()),
        station: Some("line-1".into()),
        device_id: Some("d-1".into()),
        earlier: None,
    };
    // Each key is looked up on its own: a miss on one leaves the others found; and
    // every lookup of a batch gets its own answer, in order.
    let lookups = [
        EnrollmentLookup { client_fingerprint: Some("0".repeat(64)), ..all.clone() },
        all.clone(),
        EnrollmentLookup { station: Some("line-2".into()), ..all.clone() },
        EnrollmentLookup::default(),
        EnrollmentLookup { device_id: Some("d-2".into()), ..all.clone() },
    ];
    let found = s.enrollment_contexts(&lookups).await.unwrap();
    let shape: Vec<[bool; 3]> =
        found.iter().map(|c| [c.client.is_some(), c.station.is_some(), c.device.is_some()]).collect();
    assert_eq!(
        shape,
        vec![[false, true, true], [true, true, true], [true, false, true], [false; 3], [true, true, false]]
    );
    let ctx = &found[1];
    assert_eq!(ctx.client, Some(station_cert.clone()), "every column of the certificate, status included");
    assert_eq!(ctx.station, Some(st.clone()));
    assert_eq!(ctx.device, Some(device("d-1", "b")));
    assert!(s.enrollment_contexts(&[]).await.unwrap().is_empty());
}

pub(super) async fn devices_add_get(h: &Harness) {
    let s = h.store();
    let mut d2 = device("d-2", "b-1");
    d2.hardware_serial = None;
    d2.state = DeviceState::Active;
    let devices = [device("d-1", "b-1"), d2.clone(), device("d-3", "b-2")];
    s.add_devices(&devices, event("device.register", "batch:b-1")).await.unwrap();
    for d in &devices {
        assert_eq!(s.get_device(&d.device_id).await.unwrap().as_ref(), Some(d));
    }
    assert_eq!(s.get_device("d-4").await.unwrap(), None);
    // One audit entry for the whole registration; an empty one is a no-op.
    s.add_devices(&[], event("device.register", "batch:empty")).await.unwrap();
    assert_eq!(events_of(&s.audit_entries(0, 100).await.unwrap()), [event("device.register", "batch:b-1")]);
}

pub(super) async fn devices_duplicate_stores_nothing(h: &Harness) {
    let s = h.store();
    s.add_devices(&[device("d-1", "b-1")], event("device.register", "batch:b-1")).await.unwrap();

    // Clashes with a stored device.
    let batch = [device("d-2", "b-2"), device("d-1", "b-2"), device("d-3", "b-2")];
    let err = s.add_devices(&batch, event("device.register", "batch:b-2")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("'d-1'")), "{err:?}");

    // Repeats an id within the batch.
    let batch = [device("d-4", "b-3"), device("d-5", "b-3"), device("d-4", "b-3")];
    let err = s.add_devices(&batch, event("device.register", "batch:b-3")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(ref m) if m.contains("'d-4'")), "{err:?}");

    for id in ["d-2", "d-3", "d-4", "d-5"] {
        assert_eq!(s.get_device(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(s.get_device("d-1").await.unwrap(), Some(device("d-1", "b-1")));
    assert_eq!(s.audit_entries(0, 100).await.unwrap().len(), 1);
}
