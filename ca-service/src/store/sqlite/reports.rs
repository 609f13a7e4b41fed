//! Counts and lifecycle reports (the statements are shared: `store::rows`).

use super::*;

/// A report's parameters $1..$10: window or (now, bound), the filter, the cursor, the limit.
fn page_params(a: i64, b: i64, f: &ReportFilter, after: &CertCursor, limit: i64) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    vec![
        Value::Integer(a),
        Value::Integer(b),
        text(&f.profile),
        text(&f.issuer),
        text(&f.batch),
        text(&f.model),
        Value::Integer(after.not_after),
        Value::Text(after.issuer.clone()),
        Value::Text(after.serial_hex.clone()),
        Value::Integer(limit),
    ]
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn certificate_counts(&self, now: i64) -> Result<Vec<CertificateCount>, StoreError> {
        self.read(move |conn| query_all(conn, CERTIFICATE_COUNTS_SQL, count_day(now), |row| certificate_count(row)))
            .await
    }

    async fn device_counts(&self) -> Result<Vec<(DeviceState, u64)>, StoreError> {
        self.read(move |conn| query_all(conn, DEVICE_COUNTS_SQL, [], |row| device_count(row))).await
    }

    async fn expiring_certificates(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError> {
        let params = page_params(from, to, filter, after, limit);
        let sql = numbered_for_sqlite(&expiring_sql());
        self.read(move |conn| query_all(conn, &sql, rusqlite::params_from_iter(params), |row| lifecycle_row(row))).await
    }

    async fn expiring_groups(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        group_by: GroupBy,
        limit: i64,
    ) -> Result<Vec<ExpiryGroup>, StoreError> {
        let mut params = page_params(from, to, filter, &CertCursor::start(), limit);
        params.truncate(6);
        params.push(rusqlite::types::Value::Integer(limit));
        let sql = numbered_for_sqlite(&expiring_groups_sql(group_by));
        self.read(move |conn| query_all(conn, &sql, rusqlite::params_from_iter(params), |row| expiry_group(row))).await
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
        let params = page_params(now, not_after_bound, filter, after, limit);
        let sql = numbered_for_sqlite(&stale_sql(points));
        self.read(move |conn| query_all(conn, &sql, rusqlite::params_from_iter(params), |row| lifecycle_row(row))).await
    }

    async fn find_devices(
        &self,
        query: &DeviceQuery,
        after: &str,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        use rusqlite::types::Value;
        let (sql, values) = find_devices_sql(query);
        let sql = numbered_for_sqlite(&sql);
        let mut params: Vec<Value> = values.into_iter().map(Value::Text).collect();
        params.push(Value::Text(after.to_string()));
        params.push(Value::Integer(limit.max(0)));
        self.read(move |conn| query_all(conn, &sql, rusqlite::params_from_iter(params), |row| device_at(row, 0))).await
    }

    async fn revocation_preview(&self, which: &DeviceSelector) -> Result<RevocationPreview, StoreError> {
        let (column, value) = which.column_and_value();
        let (sql, value) = (numbered_for_sqlite(&revocation_preview_sql(column)), value.to_string());
        self.read(move |conn| {
            let found = query_all(conn, &sql, [value], |row| revocation_preview(row))?;
            found.into_iter().next().ok_or_else(|| StoreError::Database("the revocation preview read no row".into()))
        })
        .await
    }
}
