-- CRLs read their entries from this index alone (see migrations/postgres/V19; SQLite
-- has no INCLUDE: the columns are keys). Keep the logical schema identical to
-- migrations/postgres.
DROP INDEX certificates_revoked_shard;
CREATE INDEX certificates_crl ON certificates (issuer, crl_shard, serial_hex, not_after, revoked_at, revocation_reason)
    WHERE status = 'revoked';
