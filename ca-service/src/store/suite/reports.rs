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

/// (issuer, state, count) of every non-empty count at `now`.
async fn counted(s: &dyn Store, now: i64) -> Vec<(String, CertState, u64)> {
    s.certificate_counts(now).await.unwrap().into_iter().map(|c| (c.issuer, c.state, c.count)).collect()
}

/// The counts are tallies kept by triggers (migration V18), by notAfter's day: every
/// way a row can be written — the store's own writes, a refused item taken back, an
/// operator's SQL — moves them, and a certificate expiring on the day asked about is
/// counted by the second, not by the day.
pub(super) async fn counts_follow_every_write_and_the_day_boundary(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    create_ca(s, "other").await;
    let day = 20_000i64;
    let (start, noon, tomorrow) = (day * 86_400, day * 86_400 + 43_200, (day + 1) * 86_400);
    let at = |serial: u8, not_after: i64| {
        let mut c = cert("device", &[serial], Some(&format!("SN-{serial}")));
        c.not_after = not_after;
        issue(c)
    };
    let batch =
        [at(1, noon - 86_400), at(2, start), at(3, noon), at(4, noon + 1), at(5, tomorrow), at(6, tomorrow + 5)];
    s.store_certificates(&batch).await.unwrap();
    let d = |state, n| ("device".to_string(), state, n);
    let o = |state, n| ("other".to_string(), state, n);
    use CertState::*;
    assert_eq!(counted(s, noon).await, [d(Expired, 2), d(Valid, 4)], "at noon: yesterday's and midnight's expired");
    assert_eq!(counted(s, noon + 1).await, [d(Expired, 3), d(Valid, 3)], "one second later");
    assert_eq!(counted(s, tomorrow + 5).await, [d(Expired, 5), d(Valid, 1)], "the next day");

    // A serial already taken is skipped, and not counted.
    let outcomes = s.store_certificates(&[at(3, noon), at(7, noon)]).await.unwrap();
    assert_eq!(outcomes, [IssuanceOutcome::SerialTaken, IssuanceOutcome::Stored]);
    assert_eq!(counted(s, noon).await, [d(Expired, 2), d(Valid, 5)]);

    s.revoke_certificate("device", &[5], Reason::KeyCompromise, noon, event("certificate.revoke", "c/5"))
        .await
        .unwrap();
    let sql = [
        "UPDATE certificates SET status = 'superseded' WHERE serial_hex = '06'",
        "DELETE FROM certificates WHERE serial_hex IN ('01', '07')",
        "UPDATE certificates SET not_after = not_after + 2592000 WHERE serial_hex = '02'",
        "UPDATE certificates SET issuer = 'other' WHERE serial_hex = '04'",
        "UPDATE certificates SET revocation_reason = 4 WHERE serial_hex = '05'",
        "UPDATE certificates SET subject = 'CN=renamed' WHERE serial_hex = '03'",
    ];
    for statement in sql {
        h.backend.exec_sql(statement).await;
    }
    let after = [d(Revoked, 1), d(Superseded, 1), d(Valid, 2), o(Valid, 1)];
    assert_eq!(counted(s, noon).await, after, "after the writes, at noon");
    let later = [d(Expired, 1), d(Revoked, 1), d(Superseded, 1), d(Valid, 1), o(Valid, 1)];
    assert_eq!(counted(s, noon + 1).await, later, "after the writes, a second later");

    // Devices, by state.
    let devices: Vec<DeviceRecord> =
        (1..=4).map(|i| device(&format!("tally-{i}"), if i <= 2 { "b1" } else { "b2" })).collect();
    s.add_devices(&devices, event("device.register", "batch")).await.unwrap();
    let which = DeviceSelector::Batch("b1".into());
    s.revoke_devices(&which, Reason::Superseded, noon, event("device.revoke", "batch:b1")).await.unwrap();
    h.backend.exec_sql("UPDATE devices SET state = 'active' WHERE device_id = 'tally-3'").await;
    h.backend.exec_sql("DELETE FROM devices WHERE device_id = 'tally-1'").await;
    h.backend.exec_sql("UPDATE devices SET batch = 'b3' WHERE device_id = 'tally-4'").await;
    let devices = s.device_counts().await.unwrap();
    assert_eq!(devices, [(DeviceState::Active, 1), (DeviceState::Expected, 1), (DeviceState::Revoked, 1)]);
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
    let stale = s.stale_certificates(&[], NOW, NOW + L / 3, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(
        serials(&stale),
        ["05", "01"],
        "lapsed 05 and overdue 01; not the replaced 03 nor the revoked device's 06"
    );
    let page = s.stale_certificates(&[], NOW, NOW + L / 3, &any, &stale[0].cursor(), 10).await.unwrap();
    assert_eq!(serials(&page), ["01"]);
    let b2 = ReportFilter { batch: Some("b2".into()), ..ReportFilter::default() };
    assert_eq!(
        serials(&s.stale_certificates(&[], NOW, NOW + L / 3, &b2, &CertCursor::start(), 10).await.unwrap()),
        ["05"]
    );
    // Earlier, 01 was not yet due.
    let earlier = s.stale_certificates(&[], NOW - 30_000, NOW + L / 3, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(serials(&earlier), ["05"]);
    // A profile whose window is centred elsewhere: due at 5 % of the lifetime, the fresh
    // 02 is stale too; at 95 %, 01 is not yet. (A quote in a profile name stays a literal.)
    let at = |ppm: i64| vec![("device".to_string(), ppm), ("it's".to_string(), 1)];
    let early = s.stale_certificates(&at(50_000), NOW, NOW + L, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(serials(&early), ["05", "01", "02"]);
    let late = s.stale_certificates(&at(950_000), NOW, NOW + L, &any, &CertCursor::start(), 10).await.unwrap();
    assert_eq!(serials(&late), ["05"]);

    let ids = |d: Vec<DeviceRecord>| d.into_iter().map(|d| d.device_id).collect::<Vec<_>>();
    assert_eq!(ids(s.never_enrolled(&any, "", 10).await.unwrap()), ["d-6", "d-7", "d-8"]);
    assert_eq!(ids(s.never_enrolled(&any, "d-6", 1).await.unwrap()), ["d-7"]);
    let m2 = ReportFilter { model: Some("m2".into()), ..ReportFilter::default() };
    assert_eq!(ids(s.never_enrolled(&m2, "", 10).await.unwrap()), ["d-8"]);
    let counts = s.device_counts().await.unwrap();
    assert_eq!(counts, [(DeviceState::Active, 4), (DeviceState::Expected, 3), (DeviceState::Revoked, 1)]);
}

/// Every device of `query` after `after`, read in pages of `limit`: each page at most
/// `limit` long, the next one starting after the last id of the one before.
async fn devices_paged(s: &dyn Store, query: &DeviceQuery, limit: i64) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    loop {
        let after = ids.last().cloned().unwrap_or_default();
        let page = s.find_devices(query, &after, limit).await.unwrap();
        assert!(page.len() as i64 <= limit, "{query:?} after {after:?}: {} > {limit}", page.len());
        let done = (page.len() as i64) < limit;
        ids.extend(page.into_iter().map(|d| d.device_id));
        if done {
            return ids;
        }
    }
}

pub(super) async fn devices_are_found_by_batch_model_and_state(h: &Harness) {
    let s = h.store();
    let states = [DeviceState::Expected, DeviceState::Active, DeviceState::Revoked, DeviceState::Decommissioned];
    // Batch, model and state vary independently: 3 batches × 2 models × 4 states.
    let devices: Vec<DeviceRecord> = (0..12usize)
        .map(|i| DeviceRecord {
            model: format!("m{}", i % 2 + 1),
            state: states[i % 4],
            ..device(&format!("d-{:02}", 12 - i), &format!("b{}", i % 3 + 1))
        })
        .collect();
    s.add_devices(&devices, event("device.register", "batch:b")).await.unwrap();
    let ids = |d: Vec<DeviceRecord>| d.into_iter().map(|d| d.device_id).collect::<Vec<_>>();
    let q = |batch: Option<&str>, model: Option<&str>, state: Option<DeviceState>| DeviceQuery {
        batch: batch.map(Into::into),
        model: model.map(Into::into),
        state,
    };

    // Each filter alone, and together; whole records, in id order (not insertion order).
    let b1 = s.find_devices(&q(Some("b1"), None, None), "", 100).await.unwrap();
    assert_eq!(ids(b1.clone()), ["d-03", "d-06", "d-09", "d-12"]);
    let mut expected: Vec<DeviceRecord> = devices.iter().filter(|d| d.batch == "b1").cloned().collect();
    expected.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(b1, expected, "the records as stored");
    assert_eq!(
        ids(s.find_devices(&q(None, Some("m2"), None), "", 100).await.unwrap()),
        ["d-01", "d-03", "d-05", "d-07", "d-09", "d-11"]
    );
    assert_eq!(
        ids(s.find_devices(&q(None, None, Some(DeviceState::Revoked)), "", 100).await.unwrap()),
        ["d-02", "d-06", "d-10"]
    );
    assert_eq!(ids(s.find_devices(&q(Some("b1"), Some("m1"), None), "", 100).await.unwrap()), ["d-06", "d-12"]);
    assert_eq!(ids(s.find_devices(&q(Some("b2"), None, Some(DeviceState::Active)), "", 100).await.unwrap()), ["d-11"]);
    assert_eq!(
        ids(s.find_devices(&q(None, Some("m1"), Some(DeviceState::Expected)), "", 100).await.unwrap()),
        ["d-04", "d-08", "d-12"]
    );
    assert_eq!(
        ids(s.find_devices(&q(Some("b1"), Some("m1"), Some(DeviceState::Revoked)), "", 100).await.unwrap()),
        ["d-06"]
    );
    // Nothing matching, by an unknown value or by a combination no device has.
    assert!(s.find_devices(&q(Some("b9"), None, None), "", 100).await.unwrap().is_empty());
    assert!(s.find_devices(&q(Some("b1"), Some("m2"), Some(DeviceState::Expected)), "", 100).await.unwrap().is_empty());
    // No filter: every device.
    assert_eq!(devices_paged(s, &DeviceQuery::default(), 100).await.len(), 12);
    assert!(s.find_devices(&DeviceQuery::default(), "", 0).await.unwrap().is_empty(), "limit 0");
    assert_eq!(ids(s.find_devices(&DeviceQuery::default(), "d-10", 100).await.unwrap()), ["d-11", "d-12"]);

    // Every combination, paged: each matching device exactly once, in id order.
    let batches = [None, Some("b1"), Some("b2"), Some("b3"), Some("b9")];
    let models = [None, Some("m1"), Some("m2"), Some("m9")];
    let mut all_states = vec![None];
    all_states.extend(states.map(Some));
    for batch in batches {
        for model in models {
            for state in all_states.iter().copied() {
                let query = q(batch, model, state);
                let mut want: Vec<String> = devices
                    .iter()
                    .filter(|d| batch.is_none_or(|b| d.batch == b))
                    .filter(|d| model.is_none_or(|m| d.model == m))
                    .filter(|d| state.is_none_or(|st| d.state == st))
                    .map(|d| d.device_id.clone())
                    .collect();
                want.sort();
                for limit in [1, 2, 5] {
                    assert_eq!(devices_paged(s, &query, limit).await, want, "{query:?}, pages of {limit}");
                }
            }
        }
    }
    // never_enrolled is the same search with the state fixed.
    let never = s.never_enrolled(&ReportFilter { batch: Some("b1".into()), ..ReportFilter::default() }, "", 10).await;
    assert_eq!(ids(never.unwrap()), ["d-12"]);
}

/// A fleet for revocation: certificates valid, superseded and already revoked, on
/// devices of two batches and two models (crossed), and a station's.
async fn revocation_fleet(h: &Harness) {
    let s = h.store();
    create_ca(s, "device").await;
    let dev = |id: &str, batch: &str, model: &str, state: DeviceState| DeviceRecord {
        model: model.into(),
        state,
        ..device(id, batch)
    };
    let devices = [
        dev("dev-1", "bA", "mA", DeviceState::Active),
        dev("dev-2", "bA", "mA", DeviceState::Active),
        dev("dev-3", "bA", "mB", DeviceState::Expected),
        dev("dev-4", "bB", "mA", DeviceState::Active),
        dev("dev-5", "bB", "mB", DeviceState::Active),
        dev("dev-6", "bB", "mB", DeviceState::Revoked),
    ];
    s.add_devices(&devices, event("device.register", "batch:b")).await.unwrap();
    let owners = [
        (1, Some("dev-1")), // valid
        (2, Some("dev-1")), // superseded
        (3, Some("dev-1")), // revoked
        (4, Some("dev-2")), // valid
        (5, Some("dev-4")), // valid
        (6, Some("dev-4")), // superseded
        (7, Some("dev-5")), // valid
        (8, Some("dev-6")), // revoked
        (9, None),          // a station's: no device
    ];
    let batch: Vec<Issuance> = owners.iter().map(|(n, d)| issue(cert("device", &[*n], *d))).collect();
    s.store_certificates(&batch).await.unwrap();
    h.backend.exec_sql("UPDATE certificates SET status = 'superseded' WHERE serial_hex IN ('02', '06')").await;
    for serial in [3u8, 8] {
        s.revoke_certificate("device", &[serial], Reason::KeyCompromise, NOW, event("certificate.revoke", "c"))
            .await
            .unwrap();
    }
}

pub(super) async fn revocation_preview_counts_what_revoking_would_revoke(h: &Harness) {
    revocation_fleet(h).await;
    let s = h.store();
    let preview = |devices, certificates| RevocationPreview { devices, certificates };
    let device = |v: &str| DeviceSelector::Device(v.into());
    let batch = |v: &str| DeviceSelector::Batch(v.into());
    let model = |v: &str| DeviceSelector::Model(v.into());

    // Before anything is revoked: devices in any state; valid and superseded
    // certificates, never the revoked ones nor the station's.
    let log = s.log_size().await.unwrap();
    assert_eq!(s.revocation_preview(&device("dev-1")).await.unwrap(), preview(1, 2), "01 and the superseded 02");
    assert_eq!(s.revocation_preview(&device("dev-3")).await.unwrap(), preview(1, 0), "a device without certificates");
    assert_eq!(s.revocation_preview(&batch("bA")).await.unwrap(), preview(3, 3), "01, 02, 04");
    assert_eq!(s.revocation_preview(&batch("bB")).await.unwrap(), preview(3, 3), "05, 06, 07; not the revoked 08");
    assert_eq!(s.revocation_preview(&model("mA")).await.unwrap(), preview(3, 5), "01, 02, 04, 05, 06");
    assert_eq!(s.revocation_preview(&model("mB")).await.unwrap(), preview(3, 1), "07");
    for nothing in [device("dev-9"), batch("bZ"), model("mZ"), device("bA"), batch("mA")] {
        assert_eq!(s.revocation_preview(&nothing).await.unwrap(), RevocationPreview::default(), "{nothing}");
    }
    // A preview changes nothing and is not audited.
    assert_eq!(s.log_size().await.unwrap(), log);
    assert_eq!(s.get_device("dev-1").await.unwrap().unwrap().state, DeviceState::Active);
    assert_eq!(s.get_certificate("device", &[1]).await.unwrap().unwrap().status, CertStatus::Valid);

    // Each preview equals what revoking then reports, also after earlier revocations
    // (one device, then a model across both batches, then a batch).
    let serials = |certs: &[RevokedCert]| {
        let mut s: Vec<String> = certs.iter().map(|c| hex::encode(&c.serial)).collect();
        s.sort();
        s
    };
    let steps: [(DeviceSelector, RevocationPreview, &[&str]); 5] = [
        (device("dev-1"), preview(1, 2), &["01", "02"]),
        (device("dev-1"), preview(1, 0), &[]),
        (model("mA"), preview(3, 3), &["04", "05", "06"]),
        (batch("bB"), preview(3, 1), &["07"]),
        (batch("bA"), preview(3, 0), &[]),
    ];
    for (which, expected, revoked) in steps {
        let before = s.revocation_preview(&which).await.unwrap();
        assert_eq!(before, expected, "{which}");
        let (devices, certs) = s
            .revoke_devices(&which, Reason::Superseded, NOW, event("device.revoke", &which.to_string()))
            .await
            .unwrap();
        assert_eq!(before, preview(devices, certs.len() as u64), "{which}: the preview is what revoking did");
        assert_eq!(serials(&certs), revoked, "{which}");
        assert_eq!(s.revocation_preview(&which).await.unwrap(), preview(devices, 0), "{which}: nothing left");
    }
    // Matching nothing: 0/0, and revoking it is NotFound.
    let nothing = batch("bZ");
    assert_eq!(s.revocation_preview(&nothing).await.unwrap(), RevocationPreview::default());
    let err = s.revoke_devices(&nothing, Reason::Superseded, NOW, event("device.revoke", "batch:bZ")).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    // The station's certificate was never counted nor revoked.
    assert_eq!(s.get_certificate("device", &[9]).await.unwrap().unwrap().status, CertStatus::Valid);
}
