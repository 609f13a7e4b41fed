//! Update-signing requests ([`UpdateRequestStore`]).

use super::*;

pub(super) fn update_request(id: &str, expires_in: i64) -> UpdateRequest {
    let now = crate::issuance::unix(std::time::SystemTime::now());
    UpdateRequest {
        id: id.into(),
        profile: "update-signing".into(),
        csr_der: b"csr".to_vec(),
        classes: vec!["gateway".into(), "sensor".into()],
        validity_days: 30,
        requester: "rm".into(),
        status: RequestStatus::Pending,
        approvals: Vec::new(),
        rejected_by: None,
        reason: None,
        issued: None,
        created_at: now,
        expires_at: now + expires_in,
    }
}

pub(super) fn fulfil(c: CertRecord, id: &str) -> Issuance {
    Issuance { effect: Some(IssuanceEffect::FulfilUpdateRequest { id: id.into() }), ..issue(c) }
}

pub(super) async fn update_requests_need_two_distinct_approvers(h: &Harness) {
    let s = h.store();
    create_ca(s, "update-authority").await;
    s.submit_update_request(&update_request("u1", 3600), event("update-request.submit", "u1")).await.unwrap();
    let dup = s.submit_update_request(&update_request("u1", 3600), event("update-request.submit", "u1")).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))), "{dup:?}");
    let approve = |who: &'static str| s.approve_update_request("u1", who, 2, event("update-request.approve", "u1"));

    let err = approve("rm").await.unwrap_err();
    assert!(err.to_string().contains("submitted update request"), "the requester approved: {err}");
    // Not approved yet: the certificate cannot be stored.
    let early = s.store_certificates(&[fulfil(cert("update-authority", &[1], None), "u1")]).await.unwrap();
    assert!(matches!(early[0], IssuanceOutcome::Refused(_)), "{early:?}");
    assert!(s.get_certificate("update-authority", &[1]).await.unwrap().is_none());

    let one = approve("alice").await.unwrap();
    assert_eq!((one.status, one.approvals.clone()), (RequestStatus::Pending, vec!["alice".to_string()]));
    let err = approve("alice").await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "one approver twice: {err}");
    let two = approve("bob").await.unwrap();
    assert_eq!(two.status, RequestStatus::Approved);
    assert_eq!(two.approvals, ["alice", "bob"]);
    assert_eq!(two.classes, ["gateway", "sensor"]);
    let err = approve("carol").await.unwrap_err();
    assert!(err.to_string().contains("already approved"), "{err}");

    // Signed once; the second attempt (e.g. a concurrent retry) is refused.
    let out = s
        .store_certificates(&[
            fulfil(cert("update-authority", &[2], None), "u1"),
            fulfil(cert("update-authority", &[3], None), "u1"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0], IssuanceOutcome::Stored);
    assert!(matches!(out[1], IssuanceOutcome::Refused(_)), "{out:?}");
    assert!(s.get_certificate("update-authority", &[3]).await.unwrap().is_none());
    let done = s.get_update_request("u1").await.unwrap().unwrap();
    assert_eq!(done.status, RequestStatus::Issued);
    assert_eq!(done.issued, Some(("update-authority".to_string(), vec![2])));
    let rejected = s.reject_update_request("u1", "alice", "late", event("update-request.reject", "u1")).await;
    assert!(matches!(rejected, Err(StoreError::Conflict(_))), "{rejected:?}");
}

pub(super) async fn update_requests_expired_or_rejected_are_never_signed(h: &Harness) {
    let s = h.store();
    create_ca(s, "update-authority").await;
    for (id, ttl) in [("live", 3600), ("stale", -1), ("lapsed", 3600), ("refused", 3600)] {
        s.submit_update_request(&update_request(id, ttl), event("update-request.submit", id)).await.unwrap();
    }
    let err = s.approve_update_request("stale", "alice", 2, event("a", "stale")).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = s.approve_update_request("nope", "alice", 2, event("a", "nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Approved, then its deadline passes before signing: never signed.
    s.approve_update_request("lapsed", "alice", 2, event("a", "lapsed")).await.unwrap();
    s.approve_update_request("lapsed", "bob", 2, event("a", "lapsed")).await.unwrap();
    h.backend.exec_sql("UPDATE update_requests SET expires_at = 1 WHERE id = 'lapsed'").await;
    let out = s.store_certificates(&[fulfil(cert("update-authority", &[7], None), "lapsed")]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)), "an expired approved request was signed: {out:?}");

    s.reject_update_request("refused", "alice", "wrong key", event("r", "refused")).await.unwrap();
    let err = s.approve_update_request("refused", "bob", 2, event("a", "refused")).await.unwrap_err();
    assert!(err.to_string().contains("already rejected"), "{err}");
    let out = s.store_certificates(&[fulfil(cert("update-authority", &[8], None), "refused")]).await.unwrap();
    assert!(matches!(out[0], IssuanceOutcome::Refused(_)), "{out:?}");
    let r = s.get_update_request("refused").await.unwrap().unwrap();
    assert_eq!((r.rejected_by.as_deref(), r.reason.as_deref()), (Some("alice"), Some("wrong key")));

    let pending = s.list_update_requests(Some(RequestStatus::Pending)).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["live", "stale"]);
    assert_eq!(s.list_update_requests(None).await.unwrap().len(), 4);
}
