-- Update-signing certificates are issued only through a request that two distinct
-- approvers (neither the requester) have approved before it expired. Times are unix
-- seconds. The approvals table's key makes "approve twice" impossible at the
-- database, whatever the caller checks.
CREATE TABLE update_requests (
    id            TEXT    NOT NULL PRIMARY KEY,
    profile       TEXT    NOT NULL,
    csr_der       BLOB    NOT NULL,
    classes       TEXT    NOT NULL,
    validity_days INTEGER NOT NULL,
    requester     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'issued')),
    rejected_by   TEXT,
    reason        TEXT,
    issuer        TEXT,
    serial_hex    TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX update_requests_status ON update_requests (status);

CREATE TABLE update_request_approvals (
    request_id  TEXT    NOT NULL REFERENCES update_requests (id),
    approver    TEXT    NOT NULL,
    approved_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Two new roles. SQLite cannot alter a CHECK constraint: rebuild the table.
CREATE TABLE api_tokens_v7 (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'provisioning-station',
                                                 'release-manager', 'update-approver')),
    secret_hash TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
INSERT INTO api_tokens_v7 (id, name, role, secret_hash, created_at, revoked_at)
    SELECT id, name, role, secret_hash, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v7 RENAME TO api_tokens;
