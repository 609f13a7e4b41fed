//! Admin API tokens.

use super::*;

#[async_trait]
impl TokenStore for SqliteStore {
    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError> {
        let t = token.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, revoked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![t.id, t.name, t.role.as_str(), t.secret_hash, t.created_at, t.revoked_at])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("API token '{}'", t.id)));
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
            Ok(query_all(conn, &sql, [id], |row| token_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
            let current = query_all(tx, &sql, [id.clone()], |row| token_from_row(row))?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("API token '{id}'")))?;
            if current.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!("API token '{id}' is already revoked")));
            }
            tx.prepare_cached("UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2")
                .map_err(db_err)?
                .execute(params![at, id])
                .map_err(db_err)?;
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
            query_all(conn, &sql, [], |row| token_from_row(row))
        })
        .await
    }
}
