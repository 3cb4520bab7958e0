-- The log of record and its indexes (schema version 1).
CREATE TABLE ledger_info (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    origin       text    NOT NULL,
    hash         text    NOT NULL CHECK (hash IN ('blake3', 'sha256')),
    format       integer NOT NULL,
    verifier_key text    NOT NULL
);

-- One row per entry: the stored bytes are the hashed bytes (FORMAT.md); `leaf` is
-- H(0x00 || bytes), `prev` the previous entry's leaf (the genesis value for seq 0).
CREATE TABLE entries (
    seq      bigint PRIMARY KEY CHECK (seq >= 0),
    event_id text   NOT NULL UNIQUE,
    leaf     bytea  NOT NULL CHECK (length(leaf) = 32),
    prev     bytea  NOT NULL CHECK (length(prev) = 32),
    bytes    bytea  NOT NULL
);

-- The chain, guarded in the database as well as by the writer: an entry must follow
-- the entry before it (no gap) and name its leaf as `prev` (no fork). Rows inserted
-- earlier by the same statement are visible here, so one multi-row insert of a
-- whole batch is checked row by row.
CREATE FUNCTION ledger_chain_guard() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    before_leaf bytea;
BEGIN
    IF NEW.seq = 0 THEN
        RETURN NEW;
    END IF;
    SELECT leaf INTO before_leaf FROM entries WHERE seq = NEW.seq - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger chain: entry % would leave a gap (no entry %)', NEW.seq, NEW.seq - 1
            USING ERRCODE = 'check_violation';
    END IF;
    IF before_leaf IS DISTINCT FROM NEW.prev THEN
        RAISE EXCEPTION 'ledger chain: entry % does not extend entry % (a fork)', NEW.seq, NEW.seq - 1
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER entries_chain BEFORE INSERT ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_guard();

-- Entries are never rewritten or removed.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: entries are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Every entry about a message (and the `resent` entry under its new message too).
CREATE TABLE message_index (
    message text   NOT NULL,
    seq     bigint NOT NULL REFERENCES entries (seq),
    PRIMARY KEY (message, seq)
);

-- Perfect Merkle subtrees of 2^level leaves from level 8 up (smaller ones are hashed
-- from `entries.leaf` when asked for).
CREATE TABLE merkle_nodes (
    level integer NOT NULL CHECK (level >= 8),
    idx   bigint  NOT NULL CHECK (idx >= 0),
    hash  bytea   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP signed notes), by tree size.
CREATE TABLE checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    note text   NOT NULL
);
