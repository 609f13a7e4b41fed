//! Counts and lifecycle reports (the statements are shared: `store::rows`).
//!
//! Every statement here is planned with its values ([`PostgresStore::query_planned`]):
//! they filter on ranges and on fields a caller may leave out (`$3 IS NULL OR …`), and
//! one plan for every value reads the whole range whatever the filter (DESIGN §8).

use super::*;

#[async_trait]
impl ReportStore for PostgresStore {
    async fn certificate_counts(&self, now: i64) -> Result<Vec<CertificateCount>, StoreError> {
        let [now, from, to, day] = count_day(now);
        let rows = self.query_planned(CERTIFICATE_COUNTS_SQL, &[&now, &from, &to, &day]).await?;
        rows.iter().map(certificate_count).collect()
    }

    async fn device_counts(&self) -> Result<Vec<(DeviceState, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(DEVICE_COUNTS_SQL, &[]).await.map_err(pg_err)?;
        rows.iter().map(device_count).collect()
    }

    async fn expiring_certificates(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError> {
        self.page(&expiring_sql(), from, to, filter, after, limit).await
    }

    async fn expiring_groups(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        group_by: GroupBy,
        limit: i64,
    ) -> Result<Vec<ExpiryGroup>, StoreError> {
        let f = filter;
        let rows = self
            .query_planned(
                &expiring_groups_sql(group_by),
                &[&from, &to, &f.profile, &f.issuer, &f.batch, &f.model, &limit],
            )
            .await?;
        rows.iter().map(expiry_group).collect()
    }

    async fn stale_certificates(
        &self,
        points: &[(String, i64)],
        now: i64,
        not_after_bound: i64,
        filter: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError> {
        self.page(&stale_sql(points), now, not_after_bound, filter, after, limit).await
    }

    async fn find_devices(
        &self,
        query: &DeviceQuery,
        after: &str,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let (sql, values) = find_devices_sql(query);
        let limit = limit.max(0);
        let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        params.extend([&after as &(dyn ToSql + Sync), &limit]);
        let rows = self.query_planned(&sql, &params).await?;
        rows.iter().map(|r| device_at(r, 0)).collect()
    }

    async fn revocation_preview(&self, which: &DeviceSelector) -> Result<RevocationPreview, StoreError> {
        let (column, value) = which.column_and_value();
        let rows = self.query_planned(&revocation_preview_sql(column), &[&value]).await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt("a count answered no row".into()))?;
        revocation_preview(row)
    }
}

impl PostgresStore {
    /// A page of certificates: `sql` with parameters $1..$10 (`store::rows`).
    async fn page(
        &self,
        sql: &str,
        a: i64,
        b: i64,
        f: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError> {
        let rows = self
            .query_planned(
                sql,
                &[
                    &a,
                    &b,
                    &f.profile,
                    &f.issuer,
                    &f.batch,
                    &f.model,
                    &after.not_after,
                    &after.issuer,
                    &after.serial_hex,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(lifecycle_row).collect()
    }
}
