-- Admin API bearer tokens: `pki_<id>.<secret>`, stored as an Argon2id PHC string,
-- never the secret itself. Times are unix microseconds.
CREATE TABLE api_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'provisioning-station')),
    secret_hash TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
