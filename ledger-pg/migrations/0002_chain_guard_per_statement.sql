-- Schema version 2. The chain guard checks a whole insert at once: one lookup by key
-- per new row, in one statement-level trigger, instead of a row trigger. Same rule:
-- every entry after the first follows the entry before it (no gap) and names its leaf
-- as `prev` (no fork). Rows of the same statement are visible to it, so a batch
-- chains within itself. And the message index drops its foreign key (below).
CREATE FUNCTION ledger_chain_guard_batch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad_seq bigint;
    before_seq bigint;
BEGIN
    SELECT n.seq, p.seq INTO bad_seq, before_seq
      FROM new_entries n
      -- A lookup by key per new row: a join could scan the whole log.
      LEFT JOIN LATERAL (SELECT e.seq, e.leaf FROM entries e WHERE e.seq = n.seq - 1) p ON true
     WHERE n.seq > 0 AND (p.seq IS NULL OR p.leaf IS DISTINCT FROM n.prev)
     ORDER BY n.seq
     LIMIT 1;
    IF bad_seq IS NULL THEN
        RETURN NULL;
    END IF;
    IF before_seq IS NULL THEN
        RAISE EXCEPTION 'ledger chain: entry % would leave a gap (no entry %)', bad_seq, bad_seq - 1
            USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'ledger chain: entry % does not extend entry % (a fork)', bad_seq, bad_seq - 1
        USING ERRCODE = 'check_violation';
END
$$;

DROP TRIGGER entries_chain ON entries;
DROP FUNCTION ledger_chain_guard();

CREATE TRIGGER entries_chain AFTER INSERT ON entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_chain_guard_batch();

-- Index rows are written in the same transaction as their entries; the foreign key's
-- per-row check (an index probe and a row lock on the entry) bought nothing else.
ALTER TABLE message_index DROP CONSTRAINT message_index_seq_fkey;
