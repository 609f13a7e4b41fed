-- Rotations on command: one row per rotation, naming its scope (a device, a batch or
-- a model); which devices are replaced or pending is read from devices/certificates.
-- Times are unix seconds.
CREATE TABLE rotations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    scope          TEXT    NOT NULL CHECK (scope IN ('device', 'batch', 'model')),
    value          TEXT    NOT NULL,
    opened_at      INTEGER NOT NULL,
    deadline       INTEGER NOT NULL CHECK (deadline > opened_at),
    after_deadline TEXT    NOT NULL CHECK (after_deadline IN ('nothing', 'revoke')),
    new_key        INTEGER NOT NULL CHECK (new_key IN (0, 1)),
    reason         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    closed_at      INTEGER,
    revoked        INTEGER
);
-- A device's rotations (by id, batch or model) on every renewal and renewal-info call.
CREATE INDEX rotations_scope ON rotations (scope, value);
-- The deadline job: open rotations by deadline.
CREATE INDEX rotations_open ON rotations (deadline) WHERE closed_at IS NULL;
