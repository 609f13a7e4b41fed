//! API tokens ([`TokenStore`]).

use super::*;

pub(super) async fn api_tokens_add_get_revoke_list(h: &Harness) {
    let s = h.store();
    let token = |id: &str, role: Role, created_at: i64| ApiToken {
        id: id.into(),
        name: format!("name-{id}"),
        role,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at,
        revoked_at: None,
    };
    let a = token("00112233445566aa", Role::Operator, 10);
    let b = token("00112233445566bb", Role::ProvisioningStation, 20);
    s.add_api_token(&a, event("token.create", "token:a")).await.unwrap();
    s.add_api_token(&b, event("token.create", "token:b")).await.unwrap();
    let err = s.add_api_token(&a, event("token.create", "token:a")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.get_api_token(&a.id).await.unwrap(), Some(a.clone()));
    assert!(s.get_api_token("ffffffffffffffff").await.unwrap().is_none());
    assert_eq!(s.list_api_tokens().await.unwrap(), vec![a.clone(), b.clone()]);

    s.revoke_api_token(&a.id, 99, event("token.revoke", "token:a")).await.unwrap();
    let revoked = s.get_api_token(&a.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(99));
    let err = s.revoke_api_token(&a.id, 100, event("token.revoke", "token:a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = s.revoke_api_token("ffffffffffffffff", 100, event("token.revoke", "token:x")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Audited once per successful write: two adds and one revocation.
    let entries = s.audit_entries(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["token.create", "token.create", "token.revoke"]);
    verify_log(s, 10).await.unwrap();
}
