-- The safety database's ballot records (node spec §2.7, devnet mode): before the coordinator signs
-- a ballot, one exclusive transaction records "identity signs this message for this layer". Two
-- different ballots of one identity in one layer are a MultipleBallots offence, so the primary
-- key refuses a second message for the layer; the table is append-only.
CREATE TABLE ballot_safety (
    node_id      TEXT    NOT NULL CHECK (length(node_id) = 64),
    layer        INTEGER NOT NULL CHECK (layer >= 0),
    message_hash TEXT    NOT NULL CHECK (length(message_hash) = 64),
    recorded_at  INTEGER NOT NULL,
    CONSTRAINT ballot_safety_pkey PRIMARY KEY (node_id, layer)
);
CREATE TRIGGER ballot_safety_no_update BEFORE UPDATE ON ballot_safety
BEGIN
    SELECT RAISE(ABORT, 'ballot_safety is append-only');
END;
CREATE TRIGGER ballot_safety_no_delete BEFORE DELETE ON ballot_safety
BEGIN
    SELECT RAISE(ABORT, 'ballot_safety is append-only');
END;
