//! Counts and lifecycle reports.

use super::*;

pub(super) async fn certificates_are_counted_by_state(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let now = 1_750_000_000;
    let mut batch = Vec::new();
    for serial in 1..=3u8 {
        batch.push(issue(cert("device", &[serial], Some(&format!("SN-{serial}")))));
    }
    let mut expired = cert("device", &[4], Some("SN-4"));
    expired.not_after = now - 1;
    batch.push(issue(expired));
    let mut at_now = cert("device", &[5], Some("SN-5"));
    at_now.not_after = now; // valid through notAfter, inclusive (RFC 5280 §4.1.2.5)
    batch.push(issue(at_now));
    let mut station = cert("station", &[6], None);
    station.profile = "station".into();
    batch.push(issue(station));
    s.store_certificates(&batch).await.unwrap();
    s.revoke_certificate("device", &[1], Reason::KeyCompromise, now, event("certificate.revoke", "c/1")).await.unwrap();
    h.backend.exec_sql("UPDATE certificates SET status = 'superseded' WHERE serial_hex = '02'").await;

    let counts = s.certificate_counts(now).await.unwrap();
    let got: Vec<(&str, &str, CertState, u64)> =
        counts.iter().map(|c| (c.issuer.as_str(), c.profile.as_str(), c.state, c.count)).collect();
    assert_eq!(
        got,
        [
            ("device", "device", CertState::Expired, 1),
            ("device", "device", CertState::Revoked, 1),
            ("device", "device", CertState::Superseded, 1),
            ("device", "device", CertState::Valid, 2),
            ("station", "station", CertState::Valid, 1),
        ]
    );
    // An expired revoked certificate is still counted revoked (its state, not its age).
    let later = s.certificate_counts(now + 100_000_000).await.unwrap();
    assert!(later.iter().any(|c| c.state == CertState::Revoked && c.count == 1), "{later:?}");
    assert!(!later.iter().any(|c| c.state == CertState::Valid), "{later:?}");
}

pub(super) async fn connection_pool_is_reported(h: &Harness) {
    let readiness: &dyn Readiness = h.store();
    match readiness.pool() {
        None => assert!(!h.backend.shared_by_processes(), "PostgreSQL has a pool to report"),
        Some(p) => {
            assert!(h.backend.shared_by_processes(), "only PostgreSQL pools connections");
            assert!(p.max > 0 && p.idle + p.in_use <= p.max && p.waiting == 0, "{p:?}");
            readiness.ping().await.unwrap();
            let after = readiness.pool().unwrap();
            assert!(after.idle >= 1, "the ping's connection went back to the pool: {after:?}");
        }
    }
}

/// A fleet in every situation the reports tell apart, at `NOW`, lifetimes of `L`.
const NOW: i64 = 1_750_000_000;
const L: i64 = 100_000;

async fn fleet(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "station").await;
    let dev = |id: &str, batch: &str, model: &str, state: DeviceState| DeviceRecord {
        model: model.into(),
        state,
        ..device(id, batch)
    };
    let devices = [
        dev("d-1", "b1", "m1", DeviceState::Active),
        dev("d-2", "b1", "m1", DeviceState::Active),
        dev("d-3", "b2", "m2", DeviceState::Active),
        dev("d-4", "b2", "m2", DeviceState::Active),
        dev("d-5", "b2", "m2", DeviceState::Revoked),
        dev("d-6", "b1", "m1", DeviceState::Expected),
        dev("d-7", "b1", "m1", DeviceState::Expected),
        dev("d-8", "b2", "m2", DeviceState::Expected),
    ];
    s.add_devices(&devices, event("device.register", "batch:b")).await.unwrap();
    let c = |serial: u8, device: Option<&str>, not_before: i64, not_after: i64| {
        let mut c = cert(if device.is_some() { "device" } else { "station" }, &[serial], device);
        (c.not_before, c.not_after) = (not_before, not_after);
        if device.is_none() {
            c.profile = "station".into();
        }
        issue(c)
    };
    let batch = [
        c(1, Some("d-1"), NOW - 90_000, NOW + 10_000), // past its renewal point: stale
        c(2, Some("d-2"), NOW - 10_000, NOW + 90_000), // fresh
        c(3, Some("d-3"), NOW - 95_000, NOW + 5_000),  // replaced by 4 (still valid): not stale
        c(4, Some("d-3"), NOW - 1_000, NOW + 99_000),
        c(5, Some("d-4"), NOW - 200_000, NOW - 100_000), // lapsed, never renewed: stale
        c(6, Some("d-5"), NOW - 90_000, NOW + 10_000),   // a revoked device: not stale
        c(7, None, NOW - 99_000, NOW + 1_000),           // a station's certificate
    ];
    s.store_certificates(&batch).await.unwrap();
    // The registry's states as given (a store may set them on its own when storing).
    for d in &devices {
        h.backend
            .exec_sql(&format!("UPDATE devices SET state = '{}' WHERE device_id = '{}'", d.state.as_str(), d.device_id))
            .await;
    }
}

fn serials(rows: &[LifecycleRow]) -> Vec<&str> {
    rows.iter().map(|r| r.serial_hex.as_str()).collect()
}

pub(super) async fn expiring_certificates_are_paged_filtered_and_grouped(h: &Harness) {
    fleet(h).await;
    let s = h.store();
    let any = ReportFilter::default();
    let (from, to) = (NOW, NOW + 20_000);
    let all = s.expiring_certificates(from, to, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(serials(&all), ["07", "03", "01", "06"], "soonest first; the expired 05 is not 'expiring'");
    let d1 = &all[2];
    assert_eq!(
        (d1.device_id.as_deref(), d1.batch.as_deref(), d1.model.as_deref(), d1.profile.as_str()),
        (Some("d-1"), Some("b1"), Some("m1"), "device")
    );
    assert_eq!((all[0].batch.as_ref(), all[0].profile.as_str()), (None, "station"));
    // Pages: the cursor of the last row of one page starts the next.
    let first = s.expiring_certificates(from, to, &any, &CertCursor::start(), 2).await.unwrap();
    let next = s.expiring_certificates(from, to, &any, &first[1].cursor(), 2).await.unwrap();
    assert_eq!((serials(&first), serials(&next)), (vec!["07", "03"], vec!["01", "06"]));
    let rest = s.expiring_certificates(from, to, &any, &next[1].cursor(), 2).await.unwrap();
    assert!(rest.is_empty());
    // Filters.
    let b1 = ReportFilter { batch: Some("b1".into()), ..ReportFilter::default() };
    assert_eq!(serials(&s.expiring_certificates(from, to, &b1, &CertCursor::start(), 10).await.unwrap()), ["01"]);
    let station = ReportFilter { profile: Some("station".into()), ..ReportFilter::default() };
    assert_eq!(serials(&s.expiring_certificates(from, to, &station, &CertCursor::start(), 10).await.unwrap()), ["07"]);
    // Groups, the ones without a batch last.
    let by_batch = s.expiring_groups(from, to, &any, GroupBy::Batch, 100).await.unwrap();
    let got: Vec<(Option<&str>, u64, i64)> =
        by_batch.iter().map(|g| (g.key.as_deref(), g.count, g.first_not_after)).collect();
    assert_eq!(got, [(Some("b1"), 1, NOW + 10_000), (Some("b2"), 2, NOW + 5_000), (None, 1, NOW + 1_000)]);
    let by_issuer = s.expiring_groups(from, to, &any, GroupBy::Issuer, 100).await.unwrap();
    assert_eq!(
        by_issuer.iter().map(|g| (g.key.clone().unwrap(), g.count)).collect::<Vec<_>>(),
        [("device".to_string(), 3), ("station".to_string(), 1)]
    );
    assert_eq!(s.expiring_groups(from, to, &any, GroupBy::Model, 1).await.unwrap().len(), 1, "the limit holds");
}

pub(super) async fn stale_identities_and_devices_never_enrolled(h: &Harness) {
    fleet(h).await;
    let s = h.store();
    let any = ReportFilter::default();
    let stale = s.stale_certificates(NOW, NOW + L / 3, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(
        serials(&stale),
        ["05", "01"],
        "lapsed 05 and overdue 01; not the replaced 03 nor the revoked device's 06"
    );
    let page = s.stale_certificates(NOW, NOW + L / 3, &any, &stale[0].cursor(), 10).await.unwrap();
    assert_eq!(serials(&page), ["01"]);
    let b2 = ReportFilter { batch: Some("b2".into()), ..ReportFilter::default() };
    assert_eq!(serials(&s.stale_certificates(NOW, NOW + L / 3, &b2, &CertCursor::start(), 10).await.unwrap()), ["05"]);
    // Earlier, 01 was not yet due.
    let earlier = s.stale_certificates(NOW - 30_000, NOW + L / 3, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(serials(&earlier), ["05"]);

    let ids = |d: Vec<DeviceRecord>| d.into_iter().map(|d| d.device_id).collect::<Vec<_>>();
    assert_eq!(ids(s.never_enrolled(&any, "", 10).await.unwrap()), ["d-6", "d-7", "d-8"]);
    assert_eq!(ids(s.never_enrolled(&any, "d-6", 1).await.unwrap()), ["d-7"]);
    let m2 = ReportFilter { model: Some("m2".into()), ..ReportFilter::default() };
    assert_eq!(ids(s.never_enrolled(&m2, "", 10).await.unwrap()), ["d-8"]);
    let counts = s.device_counts().await.unwrap();
    assert_eq!(counts, [(DeviceState::Active, 4), (DeviceState::Expected, 3), (DeviceState::Revoked, 1)]);
}
