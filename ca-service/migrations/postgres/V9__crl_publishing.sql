-- Sharded CRLs: each certificate is assigned to a CRL shard at issuance, and its
-- cRLDistributionPoints names that shard's CRL for good.
ALTER TABLE certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0;
CREATE INDEX certificates_revoked_shard ON certificates (issuer, crl_shard) WHERE status = 'revoked';

-- CRLs as published by the scheduled job (one instance at a time, under an advisory
-- lock on PostgreSQL); every instance serves the newest one of each name.
-- name: 'full', 'delta', 'shard-N', 'shard-N-delta'. Times are unix seconds.
CREATE TABLE published_crls (
    ca          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    crl_number  BIGINT  NOT NULL,
    base_number BIGINT,
    this_update BIGINT  NOT NULL,
    next_update BIGINT  NOT NULL,
    der         BYTEA    NOT NULL,
    PRIMARY KEY (ca, name)
);
