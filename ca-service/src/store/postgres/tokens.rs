//! Admin API tokens.

use super::*;

#[async_trait]
impl TokenStore for PostgresStore {
    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &token.id,
                    &token.name,
                    &token.role.as_str(),
                    &token.secret_hash,
                    &token.created_at,
                    &token.revoked_at,
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("API token '{}'", token.id)));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        self.read_opt(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"), &[&id], token_from_row).await
    }

    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE"))
            .await
            .map_err(pg_err)?;
        let current = tx
            .query_opt(&stmt, &[&id])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("API token '{id}'")))?;
        if current.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!("API token '{id}' is already revoked")));
        }
        let stmt = tx.prepare_cached("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2").await.map_err(pg_err)?;
        tx.execute(&stmt, &[&at, &id]).await.map_err(pg_err)?;
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.read_all(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"), &[], token_from_row)
            .await
    }
}
