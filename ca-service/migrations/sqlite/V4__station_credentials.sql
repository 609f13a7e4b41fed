-- Optional HTTP Basic/Bearer credentials for stations whose profile allows them:
-- an Argon2id PHC string, never the secret itself.
ALTER TABLE stations ADD COLUMN secret_hash TEXT;
