-- Counts by state, kept by triggers (see migrations/postgres/V18 for why). SQLite has
-- no statement-level triggers; its one writer makes a row-level upsert cheap.
-- Keep the logical schema identical to migrations/postgres.
CREATE TABLE certificate_tally (
    issuer  TEXT    NOT NULL,
    profile TEXT    NOT NULL,
    status  TEXT    NOT NULL,
    day     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (issuer, profile, status, day)
);
CREATE TABLE device_tally (
    state TEXT    NOT NULL PRIMARY KEY,
    n     INTEGER NOT NULL
);

CREATE TRIGGER certificate_tally_insert AFTER INSERT ON certificates BEGIN
    INSERT INTO certificate_tally (issuer, profile, status, day, n)
    VALUES (NEW.issuer, NEW.profile, NEW.status, NEW.not_after / 86400, 1)
    ON CONFLICT (issuer, profile, status, day) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER certificate_tally_delete AFTER DELETE ON certificates BEGIN
    UPDATE certificate_tally SET n = n - 1
    WHERE issuer = OLD.issuer AND profile = OLD.profile AND status = OLD.status AND day = OLD.not_after / 86400;
END;
CREATE TRIGGER certificate_tally_update AFTER UPDATE OF issuer, profile, status, not_after ON certificates
WHEN OLD.issuer IS NOT NEW.issuer OR OLD.profile IS NOT NEW.profile OR OLD.status IS NOT NEW.status
    OR OLD.not_after / 86400 IS NOT NEW.not_after / 86400
BEGIN
    UPDATE certificate_tally SET n = n - 1
    WHERE issuer = OLD.issuer AND profile = OLD.profile AND status = OLD.status AND day = OLD.not_after / 86400;
    INSERT INTO certificate_tally (issuer, profile, status, day, n)
    VALUES (NEW.issuer, NEW.profile, NEW.status, NEW.not_after / 86400, 1)
    ON CONFLICT (issuer, profile, status, day) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER device_tally_insert AFTER INSERT ON devices BEGIN
    INSERT INTO device_tally (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER device_tally_delete AFTER DELETE ON devices BEGIN
    UPDATE device_tally SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER device_tally_update AFTER UPDATE OF state ON devices WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE device_tally SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO device_tally (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;

INSERT INTO certificate_tally (issuer, profile, status, day, n)
SELECT issuer, profile, status, not_after / 86400, count(*) FROM certificates WHERE true GROUP BY 1, 2, 3, 4;
INSERT INTO device_tally (state, n) SELECT state, count(*) FROM devices WHERE true GROUP BY 1;
