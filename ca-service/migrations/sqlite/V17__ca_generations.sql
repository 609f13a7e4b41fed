-- CA rollover: a CA's later key generations are rows of their own (`device.2`, ...),
-- each with its own certificates, CRL numbers and OCSP signer. A generation issues
-- from issues_from (unix seconds; NULL: since it was created) until a later one of
-- the same CA takes over; destroyed_at (unix seconds) is set when its key is
-- destroyed. A root's later generation carries its RFC 4210 §4.4 link certificates.
-- Keep the logical schema identical to migrations/postgres.
ALTER TABLE cas ADD COLUMN issues_from INTEGER;
ALTER TABLE cas ADD COLUMN destroyed_at INTEGER;
ALTER TABLE cas ADD COLUMN old_with_new BLOB;
ALTER TABLE cas ADD COLUMN new_with_old BLOB;
