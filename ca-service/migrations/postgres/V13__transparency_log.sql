-- The audit log becomes a transparency log (docs/0010): every entry is a leaf of an
-- RFC 6962 Merkle tree. Its leaf hash is written with the entry; the hash chain it
-- replaces (prev_hash, hash) goes: anyone able to write the table could recompute it.
-- Entries from before this migration get their leaf hash from the checkpoint job.
ALTER TABLE audit_log DROP COLUMN prev_hash, DROP COLUMN hash, ADD COLUMN leaf_hash BYTEA;

-- The tree's stored hashes above the leaves: tile level L (1, 2, …) holds the hashes
-- of the complete subtrees at tree level 8L, so every tile (C2SP tlog-tiles) is one
-- range read, and any proof or root at 100M entries needs at most a few of them.
-- Written by the checkpoint job (one signer), derived only from the leaf hashes.
CREATE TABLE log_nodes (
    level SMALLINT NOT NULL CHECK (level > 0),
    idx   BIGINT   NOT NULL CHECK (idx >= 0),
    hash  BYTEA    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Every signed checkpoint (C2SP tlog-checkpoint as a signed note). Sizes only grow.
CREATE TABLE log_checkpoints (
    size      BIGINT NOT NULL PRIMARY KEY CHECK (size >= 0),
    root      BYTEA  NOT NULL,
    note      TEXT   NOT NULL,
    signed_at BIGINT NOT NULL
);
