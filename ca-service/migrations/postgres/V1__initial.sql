-- Initial schema (PostgreSQL). Keep the logical schema identical to migrations/sqlite.
-- Times: *_at columns of cas/devices/certificates.created_at are unix microseconds;
-- not_before/not_after/revoked_at are unix seconds; audit_log.time_us is unix microseconds.

CREATE TABLE cas (
    name       TEXT   NOT NULL PRIMARY KEY,
    cert_der   BYTEA  NOT NULL,
    key_store  TEXT   NOT NULL,
    key_label  TEXT   NOT NULL,
    parent     TEXT   REFERENCES cas (name),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE certificates (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer            TEXT    NOT NULL REFERENCES cas (name),
    serial_hex        TEXT    NOT NULL CHECK (serial_hex = lower(serial_hex)),
    subject           TEXT    NOT NULL,
    device_id         TEXT,
    profile           TEXT    NOT NULL,
    not_before        BIGINT  NOT NULL,
    not_after         BIGINT  NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('valid', 'revoked', 'superseded')),
    revoked_at        BIGINT,
    revocation_reason INTEGER,
    fingerprint       TEXT    NOT NULL,
    public_key_sha256 TEXT    NOT NULL,
    der               BYTEA   NOT NULL,
    created_at        BIGINT  NOT NULL,
    UNIQUE (issuer, serial_hex)
);
CREATE INDEX certificates_device_id ON certificates (device_id);
CREATE INDEX certificates_fingerprint ON certificates (fingerprint);
CREATE INDEX certificates_public_key_sha256 ON certificates (public_key_sha256);
CREATE INDEX certificates_issuer_status ON certificates (issuer, status);

CREATE TABLE devices (
    device_id       TEXT   NOT NULL PRIMARY KEY,
    model           TEXT   NOT NULL,
    class           TEXT   NOT NULL,
    batch           TEXT   NOT NULL,
    hardware_serial TEXT,
    state           TEXT   NOT NULL CHECK (state IN ('expected', 'active', 'revoked', 'decommissioned')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX devices_batch ON devices (batch);
CREATE INDEX devices_model ON devices (model);

-- Append-only by convention; tamper evidence comes from the hash chain
-- (hash = SHA-256 over prev_hash, seq, time_us and the event fields; see audit.rs).
-- Writers serialize on an advisory transaction lock before reading the head.
-- Hashes are stored as lower-case hex.
CREATE TABLE audit_log (
    seq       BIGINT NOT NULL PRIMARY KEY CHECK (seq > 0),
    time_us   BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);
