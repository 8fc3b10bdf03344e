-- Stream grants: a compute-only worker that leases an init job for another worker's disk gets a
-- random token with the lease; the storage worker asks the coordinator what the token allows. One
-- row per such lease (a new lease adds a row; the tokens of earlier leases stay known, so that they
-- are refused as stale rather than unknown); a token is valid only while the job is leased under
-- its `fencing_token`. Only the token's BLAKE3 hash is kept.
CREATE TABLE stream_grants (
    token_hash        TEXT    NOT NULL PRIMARY KEY,
    job_id            TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    fencing_token     BIGINT  NOT NULL,
    compute_worker_id TEXT    NOT NULL,
    target_worker_id  TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL
);
CREATE INDEX stream_grants_job ON stream_grants (job_id);
