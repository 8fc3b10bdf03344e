-- Proving requests (a challenge an operator or the node gave for an identity and a publish epoch)
-- and the proofs the coordinator verified. A request is pending until a proof of it is verified;
-- `first_nonce` is the first nonce of the next proving pass (passes that found nothing advance it).
CREATE TABLE proving_requests (
    identity_id   TEXT    NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    publish_epoch BIGINT  NOT NULL CHECK (publish_epoch >= 0),
    challenge     TEXT    NOT NULL CHECK (length(challenge) = 64),
    known_at      BIGINT  NOT NULL,
    deadline      BIGINT  NOT NULL,
    first_nonce   BIGINT  NOT NULL DEFAULT 0 CHECK (first_nonce >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'proved', 'failed')),
    updated_at    BIGINT  NOT NULL,
    CONSTRAINT proving_requests_pkey PRIMARY KEY (identity_id, publish_epoch)
);
CREATE INDEX proving_requests_state ON proving_requests (state);

-- Verified proofs: post's Proof JSON, and what it answers. No secret is stored here.
CREATE TABLE proofs (
    identity_id   TEXT    NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    publish_epoch BIGINT  NOT NULL CHECK (publish_epoch >= 0),
    challenge     TEXT    NOT NULL CHECK (length(challenge) = 64),
    proof         TEXT    NOT NULL,
    nonce         BIGINT  NOT NULL CHECK (nonce >= 0),
    job_id        TEXT    NOT NULL,
    verified_at   BIGINT  NOT NULL,
    CONSTRAINT proofs_pkey PRIMARY KEY (identity_id, publish_epoch)
);
