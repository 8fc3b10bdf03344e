-- The ATX builder's durable cycle state (node spec 2.7: a node restarting mid-cycle must not
-- rebuild its NIPoST challenge). Keyed by node id, like atx_safety.
--
-- prepared_challenges: the NIPoST challenge of one identity for one publish epoch, as first built
-- (hex of its SCALE bytes) with its PoET challenge hash. The first one stored is the one used;
-- later builds for the same epoch get it back instead of replacing it.
CREATE TABLE prepared_challenges (
    node_id        TEXT    NOT NULL CHECK (length(node_id) = 64),
    publish_epoch  INTEGER NOT NULL CHECK (publish_epoch >= 0),
    challenge      TEXT    NOT NULL CHECK (length(challenge) > 0 AND length(challenge) % 2 = 0),
    challenge_hash TEXT    NOT NULL CHECK (length(challenge_hash) = 64),
    created_at     INTEGER NOT NULL,
    CONSTRAINT prepared_challenges_pkey PRIMARY KEY (node_id, publish_epoch)
);

-- poet_registrations: each PoET's answer to the registration of that challenge. Accepted: the
-- round and when it ends; refused or failed: why. An accepted registration is never replaced by a
-- later failure (see Store::record_poet_registration).
CREATE TABLE poet_registrations (
    node_id       TEXT    NOT NULL CHECK (length(node_id) = 64),
    publish_epoch INTEGER NOT NULL CHECK (publish_epoch >= 0),
    poet          TEXT    NOT NULL,
    round         INTEGER CHECK (round >= 0),
    round_end_ms  INTEGER CHECK (round_end_ms >= 0),
    error         TEXT,
    registered_at INTEGER NOT NULL,
    CONSTRAINT poet_registrations_pkey PRIMARY KEY (node_id, publish_epoch, poet),
    CONSTRAINT poet_registrations_outcome CHECK (
        (round IS NOT NULL AND round_end_ms IS NOT NULL AND error IS NULL)
        OR (round IS NULL AND round_end_ms IS NULL AND error IS NOT NULL)
    )
);
