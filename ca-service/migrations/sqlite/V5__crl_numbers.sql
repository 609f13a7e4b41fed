-- cRLNumber per issuer: monotonic across restarts and across instances sharing one
-- database (incremented in the database, never in memory).
CREATE TABLE crl_numbers (
    issuer TEXT   NOT NULL PRIMARY KEY,
    number BIGINT NOT NULL
);
