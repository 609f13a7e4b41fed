//! The audit log and its tree ([`AuditStore`], [`LogStore`]): order, leaf hashes,
//! tampering, tiles and checkpoints, two instances.

use super::*;

pub(super) async fn audit_records_every_write_in_order(h: &Harness) {
    let s = h.store();
    let mut expected = Vec::new();

    let e = event("ca.init", "ca:device");
    s.create_ca(&ca("device", None), e.clone()).await.unwrap();
    expected.push(e);
    let e = event("ca.renew", "ca:device").with_details(serde_json::json!({ "reason": "external signing" }));
    s.update_ca_certificate("device", b"new", None, e.clone()).await.unwrap();
    expected.push(e);
    let batch: Vec<Issuance> = (1..=3u8).map(|i| issue(cert("device", &[i], Some("d-1")))).collect();
    s.store_certificates(&batch).await.unwrap();
    expected.extend(batch.iter().map(|i| i.audit.clone()));
    let e = event("device.register", "batch:b-1");
    s.add_devices(&[device("d-1", "b-1"), device("d-2", "b-1")], e.clone()).await.unwrap();
    expected.push(e);
    let refusals = [
        AuditEvent::success("station:ab12", "certificate.enroll", "device:d-9").with_outcome("denied: not registered"),
        AuditEvent::success("cli:bob", "audit.read", "audit").with_outcome("failed: bad page"),
    ];
    s.append_audit(&refusals).await.unwrap();
    expected.extend(refusals.iter().cloned());
    // Refused writes add nothing.
    assert!(s.create_ca(&ca("device", None), event("ca.init", "ca:device")).await.is_err());
    assert!(s.update_ca_certificate("x", b"", None, event("ca.renew", "ca:x")).await.is_err());
    assert!(s.add_devices(&[device("d-1", "b")], event("device.register", "batch:b")).await.is_err());
    assert_eq!(s.store_certificates(&batch[..1]).await.unwrap(), [IssuanceOutcome::SerialTaken]);

    let entries = all_entries(s, 3).await;
    assert_eq!(events_of(&entries), expected);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<i64>>());
    assert!(entries.iter().all(|e| e.leaf_hash == Some(e.computed_leaf_hash())), "every entry has its leaf hash");
    assert!(entries.windows(2).all(|w| w[1].time_us >= w[0].time_us));
    let leaves: Vec<tlog::Hash> = entries.iter().map(|e| e.computed_leaf_hash()).collect();
    let root = tlog::subtree_hash(&leaves);
    assert_eq!(verify_log(s, 3).await, Ok((8, root)));
    assert_eq!(verify_log(s, 1).await, Ok((8, root)));
    assert_eq!(s.log_size().await.unwrap(), 8);
    assert_eq!(s.log_hashes(0, 0, 100).await.unwrap(), leaves);
    assert_eq!(s.log_hashes(0, 3, 5).await.unwrap(), leaves[3..5]);
    // Paging from the middle.
    let tail = s.audit_entries(5, 2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    assert!(s.audit_entries(8, 10).await.unwrap().is_empty());
    assert!(s.audit_entries(0, 0).await.unwrap().is_empty());
}

/// Five entries: ca.init, three issuances, one refusal.
pub(super) async fn write_five(s: &dyn Store) {
    create_ca(s, "device").await;
    let batch: Vec<Issuance> = (1..=3u8).map(|i| issue(cert("device", &[i], None))).collect();
    s.store_certificates(&batch).await.unwrap();
    s.append_audit(&[event("certificate.enroll", "device:x").with_outcome("denied: unknown")]).await.unwrap();
    assert_eq!(verify_log(s, 2).await.map(|h| h.0), Ok(5));
}

pub(super) async fn tamper_edit_detected(h: &Harness) {
    let s = h.store();
    write_five(s).await;
    h.backend.exec_sql("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2").await;
    for page in [1, 2, 100] {
        let err = verify_log(s, page).await.unwrap_err();
        assert_eq!(err.seq, 2, "{err}");
        assert!(err.reason.contains("edited"), "{err}");
    }
    // An edit whose leaf hash is rewritten too (here: dropped, so the walk recomputes
    // it) passes the walk: only the root differs. That is what signed checkpoints are
    // for (`transparency::verify`).
    h.backend.exec_sql("UPDATE audit_log SET outcome = 'success', leaf_hash = NULL WHERE seq = 2").await;
    let (seq, root) = verify_log(s, 100).await.unwrap();
    assert_eq!(seq, 5);
    h.backend.exec_sql("UPDATE audit_log SET outcome = 'denied', leaf_hash = NULL WHERE seq = 2").await;
    let (_, rewritten) = verify_log(s, 100).await.unwrap();
    assert_ne!(root, rewritten);
    // Leaf hashes are read up to the first row without one.
    assert_eq!(s.log_hashes(0, 0, 5).await.unwrap().len(), 1);
    s.fill_leaf_hashes(&[(2, [7u8; 32]), (3, [9u8; 32])]).await.unwrap();
    let filled = s.log_hashes(0, 0, 5).await.unwrap();
    assert_eq!((filled.len(), filled[1]), (5, [7u8; 32]), "fills only the missing one");
    assert_ne!(filled[2], [9u8; 32], "a stored leaf hash is not overwritten");
}

pub(super) async fn tamper_delete_detected(h: &Harness) {
    let s = h.store();
    write_five(s).await;
    h.backend.exec_sql("DELETE FROM audit_log WHERE seq = 3").await;
    for page in [1, 2, 100] {
        let err = verify_log(s, page).await.unwrap_err();
        assert_eq!(err.seq, 3, "{err}");
        assert!(err.reason.contains("missing"), "{err}");
    }
    // A gap ends a read of leaf hashes: nothing after it is shifted into its place.
    assert_eq!(s.log_hashes(0, 0, 5).await.unwrap().len(), 2);
    // Deleting the first one breaks at 1.
    h.backend.exec_sql("DELETE FROM audit_log WHERE seq = 1").await;
    assert_eq!(verify_log(s, 100).await.unwrap_err().seq, 1);
}

/// The tree's stored hashes and the checkpoints: nodes are kept once, checkpoint
/// sizes only grow, and the newest is the largest.
pub(super) async fn tree_nodes_and_checkpoints(h: &Harness) {
    let s = h.store();
    assert_eq!(s.log_size().await.unwrap(), 0);
    assert_eq!(s.latest_checkpoint().await.unwrap(), None);
    let nodes: Vec<tlog::Hash> = (0..5u8).map(|i| [i; 32]).collect();
    s.put_log_nodes(1, 10, &nodes).await.unwrap();
    s.put_log_nodes(1, 12, &[[0xff; 32]]).await.unwrap();
    assert_eq!(s.log_hashes(1, 10, 15).await.unwrap(), nodes, "a stored node is kept");
    assert_eq!(s.log_hashes(1, 0, 12).await.unwrap(), Vec::<tlog::Hash>::new(), "a read starts where asked");
    assert!(s.log_hashes(2, 0, 100).await.unwrap().is_empty());

    let cp =
        |size: u64| StoredCheckpoint { size, root: [size as u8; 32], note: format!("note {size}\n"), signed_at: 1 };
    assert!(s.put_checkpoint(&cp(0)).await.unwrap());
    assert!(s.put_checkpoint(&cp(10)).await.unwrap());
    assert!(!s.put_checkpoint(&cp(10)).await.unwrap(), "the same size twice");
    assert!(!s.put_checkpoint(&cp(7)).await.unwrap(), "a smaller size after a larger one");
    assert!(s.put_checkpoint(&cp(12)).await.unwrap());
    assert_eq!(s.latest_checkpoint().await.unwrap(), Some(cp(12)));
    let sizes: Vec<u64> = s.checkpoints(0, 10).await.unwrap().iter().map(|c| c.size).collect();
    assert_eq!(sizes, [10, 12]);
    assert_eq!(s.checkpoints(10, 1).await.unwrap(), [cp(12)]);
}

/// Two store instances on one database write at once and keep a single valid log
/// (DESIGN invariant 6; on SQLite, two opens of one file).
pub(super) async fn two_instances_one_chain(h: &Harness) {
    let a = Arc::clone(&h.store);
    let b = h.backend.second_instance().await;
    create_ca(&*a, "device").await;
    assert!(b.get_ca("device").await.unwrap().is_some());

    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.spawn(async move {
            for i in 0..25u8 {
                let n = u8::try_from(n).unwrap();
                if i % 5 == 0 {
                    store.append_audit(&[event("audit.read", &format!("audit:{n}/{i}"))]).await.unwrap();
                }
                let batch = [issue(cert("device", &[n, i, 1], None)), issue(cert("device", &[n, i, 2], None))];
                store.store_certificates(&batch).await.unwrap();
            }
        });
    }
    // Both instances race for the same serials too: exactly one wins each.
    for store in [a.clone(), b.clone()] {
        tasks.spawn(async move {
            for i in 0..20u8 {
                store.store_certificates(&[issue(cert("device", &[0xee, i], None))]).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let entries = all_entries(&*b, 50).await;
    // 1 ca.init + 4 × (5 reads + 50 certs) + 20 contested serials.
    assert_eq!(entries.len(), 1 + 4 * 55 + 20);
    assert_eq!(verify_log(&*a, 50).await.map(|h| h.0), Ok(241));
    assert_eq!(verify_log(&*b, 7).await.map(|h| h.0), Ok(241));
}

/// Every entry of `query` below `before`, read in pages of `limit` newest first:
/// each page at most `limit` long, the next one below the last seq of the one before.
async fn audit_paged(s: &dyn Store, query: &AuditQuery, before: Option<i64>, limit: i64) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    loop {
        let below = out.last().map_or(before, |e| Some(e.seq));
        let page = s.find_audit(query, below, limit).await.unwrap();
        assert!(page.len() as i64 <= limit, "{query:?} below {below:?}: {} > {limit}", page.len());
        let done = (page.len() as i64) < limit;
        out.extend(page);
        if done {
            return out;
        }
    }
}

pub(super) async fn audit_is_found_by_actor_action_and_target(h: &Harness) {
    let s = h.store();
    // 24 entries: actor, action and target vary independently (3 × 2 × 4).
    let actors = ["cli:alice", "cli:bob", "station:ab12"];
    let actions = ["device.register", "certificate.revoke"];
    let targets = ["device:d-1", "device:d-2", "batch:b1", "ca:device"];
    let events: Vec<AuditEvent> = (0..24usize)
        .map(|i| {
            let outcome = if i % 5 == 0 { "denied: no" } else { "success" };
            AuditEvent::success(actors[i % 3], actions[i % 2], targets[i % 4]).with_outcome(outcome)
        })
        .collect();
    s.append_audit(&events[..10]).await.unwrap();
    s.append_audit(&events[10..]).await.unwrap();
    // One entry without its leaf hash (written before the tree): read as audit_entries reads it.
    h.backend.exec_sql("UPDATE audit_log SET leaf_hash = NULL WHERE seq = 7").await;
    let all = all_entries(s, 100).await;
    assert_eq!(all.len(), 24);
    assert_eq!(all[6].leaf_hash, None);
    let seqs = |entries: &[AuditEntry]| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let q = |actor: Option<&str>, action: Option<&str>, target: Option<&str>| AuditQuery {
        actor: actor.map(Into::into),
        action: action.map(Into::into),
        target: target.map(Into::into),
    };

    // Each field alone and together, newest first; entry i + 1 is events[i].
    let bob = s.find_audit(&q(Some("cli:bob"), None, None), None, 100).await.unwrap();
    assert_eq!(seqs(&bob), [23, 20, 17, 14, 11, 8, 5, 2]);
    assert!(bob.iter().all(|e| e.event.actor == "cli:bob"));
    let revokes = s.find_audit(&q(None, Some("certificate.revoke"), None), None, 100).await.unwrap();
    assert_eq!(seqs(&revokes), (1..=12).rev().map(|n| 2 * n).collect::<Vec<i64>>());
    let d2 = s.find_audit(&q(None, None, Some("device:d-2")), None, 100).await.unwrap();
    assert_eq!(seqs(&d2), [22, 18, 14, 10, 6, 2]);
    assert_eq!(seqs(&s.find_audit(&q(Some("cli:bob"), None, Some("device:d-2")), None, 100).await.unwrap()), [14, 2]);
    assert_eq!(
        seqs(&s.find_audit(&q(Some("cli:alice"), Some("device.register"), None), None, 100).await.unwrap()),
        [19, 13, 7, 1]
    );
    let all_three = q(Some("cli:alice"), Some("device.register"), Some("batch:b1"));
    assert_eq!(seqs(&s.find_audit(&all_three, None, 100).await.unwrap()), [19, 7]);
    // `before` is exclusive, and pages newest first.
    assert_eq!(seqs(&s.find_audit(&q(Some("cli:bob"), None, None), Some(14), 2).await.unwrap()), [11, 8]);
    assert!(s.find_audit(&q(Some("cli:bob"), None, None), Some(2), 100).await.unwrap().is_empty());
    assert!(s.find_audit(&AuditQuery::default(), None, 0).await.unwrap().is_empty(), "limit 0");
    // Nothing matching: an unknown value, or a combination no entry has.
    assert!(s.find_audit(&q(Some("cli:eve"), None, None), None, 100).await.unwrap().is_empty());
    assert!(s.find_audit(&q(None, Some("device.register"), Some("device:d-2")), None, 100).await.unwrap().is_empty());

    // Every combination, paged from the newest and from the middle: each matching
    // entry exactly once, equal to what audit_entries reads, newest first.
    let mut actor_values: Vec<Option<&str>> = actors.iter().copied().map(Some).collect();
    actor_values.extend([None, Some("cli:eve")]);
    let mut action_values: Vec<Option<&str>> = actions.iter().copied().map(Some).collect();
    action_values.extend([None, Some("ca.init")]);
    let mut target_values: Vec<Option<&str>> = targets.iter().copied().map(Some).collect();
    target_values.extend([None, Some("device:d-9")]);
    for actor in &actor_values {
        for action in &action_values {
            for target in &target_values {
                let query = q(*actor, *action, *target);
                let matching: Vec<AuditEntry> = all
                    .iter()
                    .rev()
                    .filter(|e| actor.is_none_or(|a| e.event.actor == a))
                    .filter(|e| action.is_none_or(|a| e.event.action == a))
                    .filter(|e| target.is_none_or(|t| e.event.target == t))
                    .cloned()
                    .collect();
                for limit in [1, 3, 100] {
                    assert_eq!(audit_paged(s, &query, None, limit).await, matching, "{query:?}, pages of {limit}");
                    let below_13: Vec<AuditEntry> = matching.iter().filter(|e| e.seq < 13).cloned().collect();
                    assert_eq!(audit_paged(s, &query, Some(13), limit).await, below_13, "{query:?} below 13");
                }
            }
        }
    }
}
