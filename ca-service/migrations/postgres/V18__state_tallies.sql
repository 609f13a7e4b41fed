-- Counts by state (reports/counts and the sampler's gauges) were grouped counts over
-- every certificate and every device: 1.3 s at 1M certificates, past the request
-- deadline at 10M. These tallies hold the same counts, kept by triggers in the
-- transaction that writes the rows, so every writer (the service, the CLI, a bulk
-- COPY, an operator's SQL) keeps them exact and no code path can forget one.
-- Keep the logical schema identical to migrations/sqlite.
--
-- Certificates are tallied by the day (UTC, not_after / 86400) their notAfter falls
-- in: whether a valid one has expired by a given time is then a sum over whole days
-- plus an index range over that one day (`store::rows::CERTIFICATE_COUNTS_SQL`).
-- Rows whose count falls to 0 stay; readers skip them.
--
-- Contention: every writer of certificates or devices already holds the audit
-- chain's transaction lock before it writes them, so the tally rows add no wait.
CREATE TABLE certificate_tally (
    issuer  TEXT   NOT NULL,
    profile TEXT   NOT NULL,
    status  TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (issuer, profile, status, day)
);
CREATE TABLE device_tally (
    state TEXT   NOT NULL PRIMARY KEY,
    n     BIGINT NOT NULL
);

-- Statement-level: a batch of 64 enrollments or a COPY of millions is one grouped
-- upsert, not one per row. Keys are upserted in order, so two writers never wait on
-- each other's tally rows in opposite orders.
CREATE FUNCTION certificate_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO certificate_tally AS t (issuer, profile, status, day, n)
        SELECT issuer, profile, status, not_after / 86400, count(*) FROM new_rows
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (issuer, profile, status, day) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO certificate_tally AS t (issuer, profile, status, day, n)
        SELECT issuer, profile, status, not_after / 86400, -count(*) FROM old_rows
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (issuer, profile, status, day) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSE
        INSERT INTO certificate_tally AS t (issuer, profile, status, day, n)
        SELECT issuer, profile, status, day, sum(d)::bigint FROM (
            SELECT issuer, profile, status, not_after / 86400 AS day, 1 AS d FROM new_rows
            UNION ALL
            SELECT issuer, profile, status, not_after / 86400, -1 FROM old_rows
        ) changed
        GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (issuer, profile, status, day) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION device_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO device_tally AS t (state, n)
        SELECT state, count(*) FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (state) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO device_tally AS t (state, n)
        SELECT state, -count(*) FROM old_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (state) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSE
        INSERT INTO device_tally AS t (state, n)
        SELECT state, sum(d)::bigint FROM (
            SELECT state, 1 AS d FROM new_rows
            UNION ALL
            SELECT state, -1 FROM old_rows
        ) changed
        GROUP BY 1 HAVING sum(d) <> 0 ORDER BY 1
        ON CONFLICT (state) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

-- Transition tables allow one event per trigger.
CREATE TRIGGER certificate_tally_insert AFTER INSERT ON certificates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_tally_apply();
CREATE TRIGGER certificate_tally_update AFTER UPDATE ON certificates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_tally_apply();
CREATE TRIGGER certificate_tally_delete AFTER DELETE ON certificates
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_tally_apply();
CREATE TRIGGER device_tally_insert AFTER INSERT ON devices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION device_tally_apply();
CREATE TRIGGER device_tally_update AFTER UPDATE ON devices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION device_tally_apply();
CREATE TRIGGER device_tally_delete AFTER DELETE ON devices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION device_tally_apply();

-- What is already stored (one pass over each table, inside this migration).
INSERT INTO certificate_tally (issuer, profile, status, day, n)
SELECT issuer, profile, status, not_after / 86400, count(*) FROM certificates GROUP BY 1, 2, 3, 4;
INSERT INTO device_tally (state, n) SELECT state, count(*) FROM devices GROUP BY 1;
