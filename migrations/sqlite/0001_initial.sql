-- smeshfleet coordinator schema, SQLite. Forward-only: never edit an applied migration, add one.
-- Conventions: ids are TEXT uuids, times INTEGER unix milliseconds, 32-byte values lowercase hex,
-- JSON as TEXT. Constraint names match migrations/postgres/0001_initial.sql.

CREATE TABLE identities (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    node_id           TEXT    NOT NULL CHECK (length(node_id) = 64),
    num_units         INTEGER NOT NULL CHECK (num_units > 0),
    labels_per_unit   INTEGER NOT NULL CHECK (labels_per_unit > 0),
    max_file_size     INTEGER NOT NULL CHECK (max_file_size > 0),
    scrypt_n          INTEGER NOT NULL CHECK (scrypt_n > 0),
    commitment_atx_id TEXT    CHECK (commitment_atx_id IS NULL OR length(commitment_atx_id) = 64),
    coinbase          TEXT,
    state             TEXT    NOT NULL CHECK (state IN ('created', 'initializing', 'ready',
                          'waiting_for_challenge', 'k2pow', 'proving', 'proof_verified', 'submitted',
                          'failed')),
    vrf_nonce         INTEGER CHECK (vrf_nonce IS NULL OR vrf_nonce >= 0),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT identities_name_key UNIQUE (name),
    CONSTRAINT identities_node_id_key UNIQUE (node_id)
);

CREATE TABLE workers (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    credential_hash   TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('online', 'offline', 'draining', 'removed')),
    capabilities      TEXT    NOT NULL,
    last_heartbeat_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT workers_credential_hash_key UNIQUE (credential_hash)
);

-- Where each postdata_<k>.bin of an identity lives.
CREATE TABLE identity_files (
    identity_id TEXT    NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    file_index  INTEGER NOT NULL CHECK (file_index >= 0),
    worker_id   TEXT    REFERENCES workers (id),
    disk_id     TEXT,
    path        TEXT,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'initializing', 'done', 'failed')),
    updated_at  INTEGER NOT NULL,
    CONSTRAINT identity_files_pkey PRIMARY KEY (identity_id, file_index)
);
CREATE INDEX identity_files_worker ON identity_files (worker_id);

-- Durable init progress: disjoint runs [start_label, end_label) of identity-wide label indices.
-- Adjacent reports within one file are merged, so a run never spans two files.
CREATE TABLE init_ranges (
    identity_id   TEXT    NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    start_label   INTEGER NOT NULL CHECK (start_label >= 0),
    end_label     INTEGER NOT NULL,
    file_index    INTEGER NOT NULL CHECK (file_index >= 0),
    job_id        TEXT    NOT NULL,
    fencing_token INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT init_ranges_pkey PRIMARY KEY (identity_id, start_label),
    CONSTRAINT init_ranges_nonempty CHECK (end_label > start_label)
);
CREATE UNIQUE INDEX init_ranges_end ON init_ranges (identity_id, end_label);

CREATE TABLE jobs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    kind               TEXT    NOT NULL CHECK (kind IN ('init', 'verify', 'k2pow', 'prove')),
    identity_id        TEXT    NOT NULL REFERENCES identities (id),
    job_key            TEXT,
    payload            TEXT    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
    assigned_worker_id TEXT    REFERENCES workers (id),
    worker_id          TEXT    REFERENCES workers (id),
    lease_expires_at   INTEGER,
    fencing_token      INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts       INTEGER NOT NULL CHECK (max_attempts > 0),
    progress           TEXT,
    result             TEXT,
    error              TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    not_before         INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    CONSTRAINT jobs_leased_has_holder
        CHECK (state <> 'leased' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE UNIQUE INDEX jobs_active_key ON jobs (job_key)
    WHERE job_key IS NOT NULL AND state IN ('queued', 'leased');
CREATE INDEX jobs_queue ON jobs (state, priority, created_at);
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_identity ON jobs (identity_id, created_at);
CREATE INDEX jobs_worker ON jobs (worker_id);

CREATE TABLE join_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    token_hash TEXT    NOT NULL,
    name       TEXT,
    role       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT    REFERENCES workers (id),
    CONSTRAINT join_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE TABLE api_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    token_hash TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- The safety database (slashing protection, node spec 2.7). Keyed by node id, not by identity row,
-- so that deleting and re-adding an identity keeps its history. Append-only.
-- prev_atx is 64 zeros for an initial ATX (the network's empty ATX id).
CREATE TABLE atx_safety (
    node_id       TEXT    NOT NULL CHECK (length(node_id) = 64),
    publish_epoch INTEGER NOT NULL CHECK (publish_epoch >= 0),
    message_hash  TEXT    NOT NULL CHECK (length(message_hash) = 64),
    prev_atx      TEXT    NOT NULL CHECK (length(prev_atx) = 64),
    recorded_at   INTEGER NOT NULL,
    CONSTRAINT atx_safety_pkey PRIMARY KEY (node_id, publish_epoch),
    CONSTRAINT atx_safety_prev_key UNIQUE (node_id, prev_atx)
);
CREATE TRIGGER atx_safety_no_update BEFORE UPDATE ON atx_safety
BEGIN
    SELECT RAISE(ABORT, 'atx_safety is append-only');
END;
CREATE TRIGGER atx_safety_no_delete BEFORE DELETE ON atx_safety
BEGIN
    SELECT RAISE(ABORT, 'atx_safety is append-only');
END;
