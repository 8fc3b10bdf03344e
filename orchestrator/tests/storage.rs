//! The store's one test suite, written once and run against both backends: `sqlite::*` on a
//! temporary database file, `postgres::*` on a throwaway PostgreSQL cluster that the suite starts
//! itself (see `support/pg.rs`), a fresh database per test.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use orchestrator::store::{
    ApiRole, Backend, ConflictKind, FilePlacement, FileState, IdentityState, IdentityUpdate, JobFailure,
    JobFilter, JobKind, JobState, JoinTokenRejection, NewApiToken, NewIdentity, NewJob, NewJoinToken,
    NewProvingRequest, NewWorker, NotSafeReason, PoetRegistrationOutcome, ProvingRequestState, RangeOutcome,
    RangeReport, Safety, Store, StoreError, StoreErrorKind, StoredProof, WorkerState,
};
use serde_json::json;
use uuid::Uuid;

use support::pg;

const T0: i64 = 1_700_000_000_000;
const LEASE_MS: i64 = 30_000;

/// One database for one test: a SQLite file in a temporary directory, or a fresh database in the
/// shared throwaway PostgreSQL cluster.
pub struct TestDb {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = Store::sqlite_url(&dir.path().join("state.db"));
        TestDb {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> TestDb {
        let url = pg::shared().create_database().await;
        TestDb {
            url,
            backend: Backend::Postgres,
            _dir: None,
        }
    }

    /// A store without the coordinator lock (a second one is a "second process").
    async fn open(&self) -> Store {
        Store::connect(&self.url).await.expect("open store")
    }

    async fn open_exclusive(&self) -> Result<Store, StoreError> {
        Store::connect_exclusive(&self.url).await
    }

    /// A raw pool on the same database, for looking behind the store's back.
    async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .expect("raw pool")
    }
}

/// Generates `mod sqlite { #[tokio::test] fn case() }` and `mod postgres { ... }` for every case.
macro_rules! storage_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::TestDb::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::TestDb::postgres().await).await
                }
            )*
        }
    };
}

storage_suite!(
    migrations_apply_and_are_idempotent,
    identities_crud_and_conflicts,
    identity_files_and_range_progress,
    workers_heartbeat_and_states,
    join_tokens,
    join_token_single_use_under_concurrency,
    api_tokens,
    events_are_monotonic,
    jobs_lease_renew_complete,
    stale_lease_is_refused_and_changes_nothing,
    expiry_requeues_then_fails_after_max_attempts,
    fail_retry_cancel_assign,
    lease_respects_assignment_kinds_and_worker_state,
    concurrent_leasing_never_hands_a_job_twice,
    job_keys_and_filters,
    safety_rules,
    safety_survives_restart,
    safety_grants_keystore_permits,
    safety_race_between_two_processes,
    safety_ballots,
    coordinator_lock,
    proving_requests_and_proofs,
    returned_lease_is_not_an_attempt,
    empty_prove_pass_is_not_a_finished_proof,
    bad_ranges_are_cut_from_recorded_progress,
    builder_challenge_first_writer_wins,
    builder_challenge_survives_reopen,
    builder_poet_registrations_recorded_and_listed,
    builder_unknown_is_none,
);

fn identity(name: &str, node: u8) -> NewIdentity {
    NewIdentity {
        name: name.to_owned(),
        node_id: [node; 32],
        num_units: 2,
        labels_per_unit: 1024,
        // 1024 labels per file: two files.
        max_file_size: 1024 * 16,
        scrypt_n: 8192,
        commitment_atx_id: None,
        coinbase: None,
    }
}

/// The files revision of identity `id`.
async fn files_rev(s: &Store, id: Uuid) -> i64 {
    s.list_identity_file_revs()
        .await
        .expect("revs")
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, r)| r)
        .expect("identity has a revision")
}

fn worker(name: &str, cred: u8) -> NewWorker {
    NewWorker {
        name: name.to_owned(),
        credential_hash: [cred; 32],
        capabilities: json!({"gpus": 1}),
    }
}

fn kind_of(r: Result<impl std::fmt::Debug, StoreError>) -> StoreErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

fn conflict_of(r: Result<impl std::fmt::Debug, StoreError>) -> ConflictKind {
    match r {
        Ok(v) => panic!("expected a conflict, got {v:?}"),
        Err(e) => e
            .conflict_kind()
            .unwrap_or_else(|| panic!("expected a conflict, got {e}")),
    }
}

mod cases {
    use super::*;

    pub async fn migrations_apply_and_are_idempotent(db: TestDb) {
        let store = db.open().await;
        assert_eq!(store.backend(), db.backend);
        let id = store
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("create")
            .id;
        store.close().await;
        // Reopening runs the migrator again: nothing to apply, data intact.
        let store = db.open().await;
        assert_eq!(store.get_identity(id).await.expect("get").name, "a");
        let store2 = db.open().await;
        assert_eq!(store2.list_identities().await.expect("list").len(), 1);
        let raw = db.raw().await;
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&raw)
            .await
            .expect("count migrations");
        // Every migration file of the backend, once.
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite"))
            .expect("read migrations")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count();
        assert_eq!(applied, i64::try_from(files).expect("count"));
    }

    pub async fn identities_crud_and_conflicts(db: TestDb) {
        let s = db.open().await;
        let a = s
            .create_identity(&identity("alpha", 1), T0)
            .await
            .expect("create alpha");
        assert_eq!(a.state, IdentityState::Created);
        assert_eq!((a.created_at, a.updated_at), (T0, T0));
        assert_eq!(a.node_id, [1; 32]);
        let b = s
            .create_identity(&identity("beta", 2), T0)
            .await
            .expect("create beta");

        assert_eq!(s.get_identity(a.id).await.expect("get"), a);
        assert_eq!(
            s.find_identity_by_node_id(&[2; 32]).await.expect("find"),
            Some(b.clone())
        );
        assert_eq!(s.find_identity_by_node_id(&[9; 32]).await.expect("find"), None);
        assert_eq!(
            s.find_identity_by_name("alpha")
                .await
                .expect("find")
                .map(|i| i.id),
            Some(a.id)
        );
        let names: Vec<String> = s
            .list_identities()
            .await
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["alpha", "beta"]);

        // Constraint violations are Duplicate conflicts.
        assert_eq!(
            conflict_of(s.create_identity(&identity("alpha", 3), T0).await),
            ConflictKind::Duplicate
        );
        assert_eq!(
            conflict_of(s.create_identity(&identity("gamma", 1), T0).await),
            ConflictKind::Duplicate
        );
        let err = s
            .create_identity(&identity("alpha", 3), T0)
            .await
            .expect_err("dup");
        assert!(err.to_string().contains("name already exists"), "{err}");
        assert!(!err.is_retryable());
        // Invalid input never reaches the database.
        let mut bad = identity("bad", 4);
        bad.max_file_size = 10;
        assert_eq!(
            kind_of(s.create_identity(&bad, T0).await),
            StoreErrorKind::Invalid
        );
        assert_eq!(
            kind_of(s.get_identity(Uuid::new_v4()).await),
            StoreErrorKind::NotFound
        );

        // State: unconditional, then compare-and-set.
        let a2 = s
            .update_identity_state(a.id, IdentityState::Initializing, None, T0 + 1)
            .await
            .expect("state");
        assert_eq!((a2.state, a2.updated_at), (IdentityState::Initializing, T0 + 1));
        let a3 = s
            .update_identity_state(
                a.id,
                IdentityState::Ready,
                Some(IdentityState::Initializing),
                T0 + 2,
            )
            .await
            .expect("cas");
        assert_eq!(a3.state, IdentityState::Ready);
        let lost = s
            .update_identity_state(
                a.id,
                IdentityState::Proving,
                Some(IdentityState::Initializing),
                T0 + 3,
            )
            .await;
        assert_eq!(conflict_of(lost), ConflictKind::StateChanged);
        assert_eq!(
            s.get_identity(a.id).await.expect("get").state,
            IdentityState::Ready
        );
        assert_eq!(
            kind_of(
                s.update_identity_state(Uuid::new_v4(), IdentityState::Ready, None, T0)
                    .await
            ),
            StoreErrorKind::NotFound
        );

        // Fields.
        let upd = IdentityUpdate {
            commitment_atx_id: Some([7; 32]),
            coinbase: Some("sm1qqqq".to_owned()),
            vrf_nonce: Some(42),
            ..IdentityUpdate::default()
        };
        let a4 = s.update_identity(a.id, &upd, T0 + 4).await.expect("update");
        assert_eq!(a4.commitment_atx_id, Some([7; 32]));
        assert_eq!(a4.coinbase.as_deref(), Some("sm1qqqq"));
        assert_eq!(a4.vrf_nonce, Some(42));
        assert_eq!(a4.name, "alpha");
        let rename = IdentityUpdate {
            name: Some("beta".to_owned()),
            ..IdentityUpdate::default()
        };
        assert_eq!(
            conflict_of(s.update_identity(a.id, &rename, T0).await),
            ConflictKind::Duplicate
        );

        // Delete: refused with active jobs, then cascades.
        let job = s
            .enqueue_job(&NewJob::new(JobKind::Init, a.id, json!({})), T0)
            .await
            .expect("enqueue");
        assert_eq!(
            conflict_of(s.delete_identity(a.id).await),
            ConflictKind::InvalidTransition
        );
        s.cancel_job(job.id, T0).await.expect("cancel");
        s.delete_identity(a.id).await.expect("delete");
        assert_eq!(kind_of(s.get_identity(a.id).await), StoreErrorKind::NotFound);
        assert_eq!(kind_of(s.get_job(job.id).await), StoreErrorKind::NotFound);
        assert_eq!(kind_of(s.delete_identity(a.id).await), StoreErrorKind::NotFound);
    }

    pub async fn identity_files_and_range_progress(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("rig", 1), T0).await.expect("worker");
        let w2 = s.create_worker(&worker("rig2", 2), T0).await.expect("worker2");

        // Placement upsert.
        let p0 = FilePlacement {
            file_index: 0,
            worker_id: Some(w.id),
            disk_id: Some("disk-a".to_owned()),
            path: Some("/data/a".to_owned()),
            state: FileState::Pending,
        };
        let other = s
            .create_identity(&identity("other", 9), T0)
            .await
            .expect("other identity")
            .id;
        let rev0 = files_rev(&s, id).await;
        let other_rev = files_rev(&s, other).await;
        let f = s.upsert_identity_file(id, &p0, T0).await.expect("upsert");
        assert_eq!((f.file_index, f.labels_done, f.state), (0, 0, FileState::Pending));
        let rev1 = files_rev(&s, id).await;
        assert!(rev1 > rev0, "a placement moves the files revision");
        let p0b = FilePlacement {
            state: FileState::Initializing,
            ..p0.clone()
        };
        s.upsert_identity_file(id, &p0b, T0 + 1)
            .await
            .expect("upsert again");
        let p1 = FilePlacement {
            file_index: 1,
            ..p0.clone()
        };
        s.upsert_identity_file(id, &p1, T0).await.expect("upsert file 1");
        let bad = FilePlacement {
            file_index: 2,
            ..p0.clone()
        };
        assert_eq!(
            kind_of(s.upsert_identity_file(id, &bad, T0).await),
            StoreErrorKind::Invalid
        );
        let files = s.list_identity_files(id).await.expect("files");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].state, FileState::Initializing);
        assert_eq!(files[0].disk_id.as_deref(), Some("disk-a"));

        let job = s
            .enqueue_job(&NewJob::new(JobKind::Init, id, json!({})), T0)
            .await
            .expect("job");
        let lease = s
            .lease_jobs(w.id, &[JobKind::Init], T0, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0);
        assert_eq!(lease.job.id, job.id);
        let report = |start: u64, end: u64, file: u64, token: i64, worker: Uuid| RangeReport {
            identity_id: id,
            file_index: file,
            start_label: start,
            end_label: end,
            job_id: job.id,
            worker_id: worker,
            fencing_token: token,
        };
        let tok = lease.fencing_token;
        assert_eq!(
            s.record_range_done(&report(0, 100, 0, tok, w.id), T0)
                .await
                .expect("r1"),
            RangeOutcome::Recorded
        );
        assert_eq!(s.labels_done(id).await.expect("done"), 100);
        let rev2 = files_rev(&s, id).await;
        assert!(rev2 > rev1, "a recorded range moves the files revision");
        // Re-reports and contained ranges never count twice, whoever sends them.
        assert_eq!(
            s.record_range_done(&report(0, 100, 0, tok, w.id), T0)
                .await
                .expect("again"),
            RangeOutcome::AlreadyRecorded
        );
        assert_eq!(
            s.record_range_done(&report(10, 20, 0, tok + 5, w2.id), T0)
                .await
                .expect("inside"),
            RangeOutcome::AlreadyRecorded
        );
        assert_eq!(s.labels_done(id).await.expect("done"), 100);
        assert_eq!(files_rev(&s, id).await, rev2, "nothing recorded, nothing moved");
        // Adjacent ranges merge; a gap stays a gap.
        s.record_range_done(&report(100, 200, 0, tok, w.id), T0)
            .await
            .expect("adjacent");
        s.record_range_done(&report(300, 400, 0, tok, w.id), T0)
            .await
            .expect("gap");
        s.record_range_done(&report(200, 300, 0, tok, w.id), T0)
            .await
            .expect("fill");
        let ranges = s.list_init_ranges(id).await.expect("ranges");
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        assert_eq!((ranges[0].start_label, ranges[0].end_label), (0, 400));
        // Partial overlap is a conflict and changes nothing.
        assert_eq!(
            conflict_of(s.record_range_done(&report(350, 450, 0, tok, w.id), T0).await),
            ConflictKind::Overlap
        );
        assert_eq!(s.labels_done(id).await.expect("done"), 400);
        // Outside the file, across files, empty: invalid.
        for r in [
            report(1000, 1100, 0, tok, w.id),
            report(500, 500, 0, tok, w.id),
            report(2040, 2050, 1, tok, w.id),
        ] {
            assert_eq!(
                kind_of(s.record_range_done(&r, T0).await),
                StoreErrorKind::Invalid,
                "{r:?}"
            );
        }
        // Stale token or another worker: refused, nothing recorded.
        assert_eq!(
            kind_of(s.record_range_done(&report(500, 600, 0, tok + 1, w.id), T0).await),
            StoreErrorKind::StaleLease
        );
        assert_eq!(
            kind_of(s.record_range_done(&report(500, 600, 0, tok, w2.id), T0).await),
            StoreErrorKind::StaleLease
        );
        assert_eq!(s.labels_done(id).await.expect("done"), 400);
        // File 1 holds labels [1024, 2048); runs never merge across files.
        s.record_range_done(&report(400, 1024, 0, tok, w.id), T0)
            .await
            .expect("end of file 0");
        s.record_range_done(&report(1024, 1100, 1, tok, w.id), T0)
            .await
            .expect("file 1");
        assert_eq!(s.labels_done(id).await.expect("done"), 1100);
        assert_eq!(s.list_init_ranges(id).await.expect("ranges").len(), 2);
        assert!(files_rev(&s, id).await > rev2);
        assert_eq!(
            files_rev(&s, other).await,
            other_rev,
            "another identity's revision stays"
        );
        // The bulk reads of the reconcile loop's file cache see the same rows.
        let (bulk_files, bulk_ranges) = s.list_files_and_ranges_of(&[id, other]).await.expect("bulk");
        assert_eq!(bulk_files.len(), 2);
        assert_eq!(
            bulk_ranges
                .iter()
                .map(|(i, r)| (*i, r.start_label, r.end_label))
                .collect::<Vec<_>>(),
            [(id, 0, 1024), (id, 1024, 1100)]
        );
        // Placing files of an identity in bulk moves its revision; deleting it (files cascade)
        // removes it from the revisions.
        s.place_identity_files(
            other,
            w.id,
            &[(0, "disk-b".to_owned()), (1, "disk-b".to_owned())],
            T0,
        )
        .await
        .expect("place other");
        assert!(files_rev(&s, other).await > other_rev);
        s.delete_identity(other).await.expect("delete other");
        assert!(!s
            .list_identity_file_revs()
            .await
            .expect("revs")
            .iter()
            .any(|(i, _)| *i == other));
        let files = s.list_identity_files(id).await.expect("files");
        assert_eq!(
            files.iter().map(|f| f.labels_done).collect::<Vec<_>>(),
            [1024, 76]
        );
        // After completion the lease is gone: new ranges are stale.
        s.complete_job(job.id, w.id, tok, &json!({}), T0)
            .await
            .expect("complete");
        assert_eq!(
            kind_of(s.record_range_done(&report(1100, 1200, 1, tok, w.id), T0).await),
            StoreErrorKind::StaleLease
        );
        assert_eq!(s.reset_file_progress(id, 1).await.expect("reset"), 76);
        assert_eq!(s.labels_done(id).await.expect("done"), 1024);
    }

    pub async fn workers_heartbeat_and_states(db: TestDb) {
        let s = db.open().await;
        let w = s.create_worker(&worker("rig-b", 1), T0).await.expect("create");
        assert_eq!((w.state, w.last_heartbeat_at), (WorkerState::Online, Some(T0)));
        let w2 = s.create_worker(&worker("rig-a", 2), T0).await.expect("create 2");
        assert_eq!(
            conflict_of(s.create_worker(&worker("dup", 1), T0).await),
            ConflictKind::Duplicate
        );
        assert_eq!(s.get_worker(w.id).await.expect("get"), w);
        assert_eq!(
            s.find_worker_by_credential_hash(&[1; 32])
                .await
                .expect("find")
                .map(|x| x.id),
            Some(w.id)
        );
        assert_eq!(
            s.find_worker_by_credential_hash(&[9; 32]).await.expect("find"),
            None
        );
        let names: Vec<_> = s
            .list_workers()
            .await
            .expect("list")
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(names, ["rig-a", "rig-b"]);

        let hb = s
            .heartbeat(w.id, T0 + 10, Some(&json!({"gpus": 2})))
            .await
            .expect("heartbeat");
        assert_eq!(
            (hb.last_heartbeat_at, hb.capabilities.clone()),
            (Some(T0 + 10), json!({"gpus": 2}))
        );
        let hb = s.heartbeat(w.id, T0 + 20, None).await.expect("heartbeat");
        assert_eq!(hb.capabilities, json!({"gpus": 2}));

        s.set_worker_state(w.id, WorkerState::Draining, T0)
            .await
            .expect("drain");
        assert_eq!(
            s.heartbeat(w.id, T0 + 30, None).await.expect("hb").state,
            WorkerState::Draining
        );
        // w2's last heartbeat is T0: stale at T0 + 25.
        assert_eq!(
            s.mark_stale_workers_offline(T0 + 25, T0 + 25)
                .await
                .expect("stale"),
            vec![w2.id]
        );
        assert_eq!(
            s.get_worker(w2.id).await.expect("get").state,
            WorkerState::Offline
        );
        assert_eq!(
            s.heartbeat(w2.id, T0 + 40, None).await.expect("back").state,
            WorkerState::Online
        );

        s.set_worker_state(w2.id, WorkerState::Removed, T0)
            .await
            .expect("remove");
        assert_eq!(
            s.find_worker_by_credential_hash(&[2; 32]).await.expect("find"),
            None
        );
        assert_eq!(
            conflict_of(s.heartbeat(w2.id, T0, None).await),
            ConflictKind::InvalidTransition
        );
        assert_eq!(
            conflict_of(s.set_worker_state(w2.id, WorkerState::Online, T0).await),
            ConflictKind::InvalidTransition
        );
        assert_eq!(
            kind_of(s.heartbeat(Uuid::new_v4(), T0, None).await),
            StoreErrorKind::NotFound
        );
    }

    pub async fn join_tokens(db: TestDb) {
        let s = db.open().await;
        let new = |h: u8, exp: i64| NewJoinToken {
            token_hash: [h; 32],
            name: Some(format!("t{h}")),
            role: "worker".to_owned(),
            expires_at: exp,
        };
        let t1 = s.create_join_token(&new(1, T0 + 1000), T0).await.expect("create");
        assert_eq!((t1.used_at, t1.role.as_str()), (None, "worker"));
        assert_eq!(
            conflict_of(s.create_join_token(&new(1, T0 + 1000), T0).await),
            ConflictKind::Duplicate
        );
        s.create_join_token(&new(2, T0 + 10), T0)
            .await
            .expect("create expiring");
        let t3 = s
            .create_join_token(&new(3, T0 + 1000), T0)
            .await
            .expect("create 3");
        let t4 = s
            .create_join_token(&new(4, T0 + 1000), T0)
            .await
            .expect("create 4");

        let used = s.consume_join_token(&[1; 32], T0 + 1).await.expect("consume");
        assert_eq!(used.used_at, Some(T0 + 1));
        let rejected = |r: Result<_, StoreError>| match r {
            Err(StoreError::JoinTokenRejected { reason }) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(
            rejected(s.consume_join_token(&[1; 32], T0 + 2).await),
            JoinTokenRejection::AlreadyUsed
        );
        assert_eq!(
            rejected(s.consume_join_token(&[2; 32], T0 + 10).await),
            JoinTokenRejection::Expired
        );
        assert_eq!(
            rejected(s.consume_join_token(&[9; 32], T0).await),
            JoinTokenRejection::Unknown
        );

        // Enrollment is one transaction: a refused token creates no worker, a taken credential
        // leaves the token unused.
        let (tok, w) = s
            .enroll_worker(&[3; 32], &worker("rig", 7), T0)
            .await
            .expect("enroll");
        assert_eq!((tok.id, tok.used_by), (t3.id, Some(w.id)));
        assert!(s.enroll_worker(&[3; 32], &worker("rig2", 8), T0).await.is_err());
        assert_eq!(
            conflict_of(s.enroll_worker(&[4; 32], &worker("rig3", 7), T0).await),
            ConflictKind::Duplicate
        );
        assert_eq!(s.list_workers().await.expect("workers").len(), 1);
        let tokens = s.list_join_tokens().await.expect("list");
        assert_eq!(tokens.len(), 4);
        assert_eq!(
            tokens.iter().find(|t| t.id == t4.id).map(|t| t.used_at),
            Some(None)
        );
        s.delete_join_token(t4.id).await.expect("delete");
        assert_eq!(
            kind_of(s.delete_join_token(t4.id).await),
            StoreErrorKind::NotFound
        );
        assert_eq!(
            kind_of(s.delete_join_token(t3.id).await),
            StoreErrorKind::NotFound
        );
    }

    pub async fn join_token_single_use_under_concurrency(db: TestDb) {
        let a = db.open().await;
        let b = db.open().await;
        for round in 0..3u8 {
            let hash = [round; 32];
            let new = NewJoinToken {
                token_hash: hash,
                name: None,
                role: "worker".to_owned(),
                expires_at: T0 + 1000,
            };
            a.create_join_token(&new, T0).await.expect("create");
            let mut tasks = Vec::new();
            for i in 0..16u8 {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    let w = NewWorker {
                        name: format!("rig{i}"),
                        credential_hash: [round.wrapping_mul(16).wrapping_add(i).wrapping_add(100); 32],
                        capabilities: json!({}),
                    };
                    if i % 4 == 0 {
                        s.enroll_worker(&hash, &w, T0 + 1).await.map(|_| ())
                    } else {
                        s.consume_join_token(&hash, T0 + 1).await.map(|_| ())
                    }
                }));
            }
            let mut won = 0;
            for t in tasks {
                match t.await.expect("join") {
                    Ok(()) => won += 1,
                    Err(StoreError::JoinTokenRejected {
                        reason: JoinTokenRejection::AlreadyUsed,
                    }) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            assert_eq!(won, 1, "round {round}");
        }
    }

    pub async fn api_tokens(db: TestDb) {
        let s = db.open().await;
        let new = |h: u8, role| NewApiToken {
            name: format!("tok{h}"),
            role,
            token_hash: [h; 32],
        };
        let t1 = s
            .create_api_token(&new(1, ApiRole::Admin), T0)
            .await
            .expect("create");
        let t2 = s
            .create_api_token(&new(2, ApiRole::Viewer), T0 + 1)
            .await
            .expect("create");
        assert_eq!(
            conflict_of(s.create_api_token(&new(1, ApiRole::Viewer), T0).await),
            ConflictKind::Duplicate
        );
        assert_eq!(
            s.find_api_token_by_hash(&[1; 32]).await.expect("find"),
            Some(t1.clone())
        );
        assert_eq!(s.find_api_token_by_hash(&[3; 32]).await.expect("find"), None);
        assert_eq!(
            s.list_api_tokens().await.expect("list"),
            vec![t1.clone(), t2.clone()]
        );
        let r = s.revoke_api_token(t1.id, T0 + 5).await.expect("revoke");
        assert_eq!(r.revoked_at, Some(T0 + 5));
        assert_eq!(
            s.revoke_api_token(t1.id, T0 + 9).await.expect("again").revoked_at,
            Some(T0 + 5)
        );
        assert_eq!(s.find_api_token_by_hash(&[1; 32]).await.expect("find"), None);
        assert_eq!(
            s.find_api_token_by_hash(&[2; 32])
                .await
                .expect("find")
                .map(|t| t.role),
            Some(ApiRole::Viewer)
        );
        assert_eq!(
            kind_of(s.revoke_api_token(Uuid::new_v4(), T0).await),
            StoreErrorKind::NotFound
        );
    }

    pub async fn events_are_monotonic(db: TestDb) {
        let s = db.open().await;
        assert_eq!(s.last_event_id().await.expect("last"), 0);
        let e1 = s
            .append_event("identity.created", "a", &json!({"n": 1}), T0)
            .await
            .expect("append");
        let e2 = s
            .append_event("job.leased", "j", &json!({"n": 2}), T0)
            .await
            .expect("append");
        assert!(e2 > e1);
        let all = s.list_events_since(0, 100).await.expect("list");
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].kind.as_str(), all[0].data.clone()),
            ("identity.created", json!({"n": 1}))
        );
        assert_eq!(s.list_events_since(e1, 100).await.expect("since").len(), 1);
        assert_eq!(s.last_event_id().await.expect("last"), e2);

        let other = db.open().await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let st = if i % 2 == 0 { s.clone() } else { other.clone() };
            tasks.push(tokio::spawn(async move {
                st.append_event("tick", "x", &json!(i), T0).await
            }));
        }
        let mut ids = HashSet::new();
        for t in tasks {
            assert!(ids.insert(t.await.expect("join").expect("append")));
        }
        let listed: Vec<i64> = s
            .list_events_since(e2, 1000)
            .await
            .expect("list")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(listed.len(), 20);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.list_events_since(0, 5).await.expect("limit").len(), 5);
        assert_eq!(s.prune_events(T0 + 1).await.expect("prune"), 22);
    }

    pub async fn jobs_lease_renew_complete(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("rig", 1), T0).await.expect("worker");
        let mut ids = Vec::new();
        for (i, prio) in [0i64, 5, 1].into_iter().enumerate() {
            let job = NewJob {
                priority: prio,
                ..NewJob::new(JobKind::Init, id, json!({"i": i}))
            };
            let j = s.enqueue_job(&job, T0 + i as i64).await.expect("enqueue");
            assert_eq!((j.state, j.fencing_token, j.attempts), (JobState::Queued, 0, 0));
            ids.push(j.id);
        }
        let leases = s
            .lease_jobs(w.id, &[], T0 + 10, LEASE_MS, 2)
            .await
            .expect("lease");
        assert_eq!(
            leases.iter().map(|l| l.job.id).collect::<Vec<_>>(),
            [ids[1], ids[2]]
        );
        let l = &leases[0];
        assert_eq!(l.fencing_token, 1);
        assert_eq!(
            (
                l.job.state,
                l.job.worker_id,
                l.job.lease_expires_at,
                l.job.attempts
            ),
            (JobState::Leased, Some(w.id), Some(T0 + 10 + LEASE_MS), 1)
        );
        let renewed = s
            .renew_lease(l.job.id, w.id, 1, Some(&json!({"labels": 7})), T0 + 20, LEASE_MS)
            .await
            .expect("renew");
        assert_eq!(
            (renewed.lease_expires_at, renewed.progress.clone()),
            (Some(T0 + 20 + LEASE_MS), Some(json!({"labels": 7})))
        );
        let done = s
            .complete_job(l.job.id, w.id, 1, &json!({"ok": true}), T0 + 30)
            .await
            .expect("complete");
        assert_eq!(
            (done.state, done.result.clone(), done.lease_expires_at),
            (JobState::Done, Some(json!({"ok": true})), None)
        );
        // Completing twice is stale and changes nothing.
        assert_eq!(
            kind_of(
                s.complete_job(l.job.id, w.id, 1, &json!({"ok": false}), T0 + 40)
                    .await
            ),
            StoreErrorKind::StaleLease
        );
        assert_eq!(s.get_job(l.job.id).await.expect("get"), done);
        assert_eq!(
            kind_of(s.complete_job(Uuid::new_v4(), w.id, 1, &json!({}), T0).await),
            StoreErrorKind::NotFound
        );
        // The last queued one.
        let rest = s
            .lease_jobs(w.id, &[JobKind::Init], T0 + 50, LEASE_MS, 10)
            .await
            .expect("lease rest");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].job.id, ids[0]);
        assert!(s
            .lease_jobs(w.id, &[], T0 + 60, LEASE_MS, 10)
            .await
            .expect("empty")
            .is_empty());
        assert_eq!(
            kind_of(s.lease_jobs(w.id, &[], T0, 0, 1).await),
            StoreErrorKind::Invalid
        );
    }

    pub async fn stale_lease_is_refused_and_changes_nothing(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let wa = s.create_worker(&worker("a", 1), T0).await.expect("worker a");
        let wb = s.create_worker(&worker("b", 2), T0).await.expect("worker b");
        let job = s
            .enqueue_job(&NewJob::new(JobKind::Prove, id, json!({})), T0)
            .await
            .expect("enqueue");
        let la = s
            .lease_jobs(wa.id, &[], T0, LEASE_MS, 1)
            .await
            .expect("lease a")
            .remove(0);
        // A's lease expires; the job goes to B with a new token.
        let expired = s.expire_leases(T0 + LEASE_MS + 1).await.expect("expire");
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].job_id, expired[0].worker_id, expired[0].new_state),
            (job.id, Some(wa.id), JobState::Queued)
        );
        let lb = s
            .lease_jobs(wb.id, &[], T0 + LEASE_MS + 2, LEASE_MS, 1)
            .await
            .expect("lease b")
            .remove(0);
        assert_eq!((la.fencing_token, lb.fencing_token), (1, 2));
        let before = s.get_job(job.id).await.expect("get");

        // Everything A tries now is refused and changes nothing.
        let t = T0 + LEASE_MS + 3;
        let results = [
            kind_of(
                s.complete_job(job.id, wa.id, la.fencing_token, &json!({"from": "a"}), t)
                    .await,
            ),
            kind_of(
                s.renew_lease(
                    job.id,
                    wa.id,
                    la.fencing_token,
                    Some(&json!({"a": 1})),
                    t,
                    LEASE_MS,
                )
                .await,
            ),
            kind_of(
                s.fail_job(
                    job.id,
                    wa.id,
                    la.fencing_token,
                    &JobFailure {
                        error: "x".into(),
                        retryable: false,
                        retry_at: None,
                    },
                    t,
                )
                .await,
            ),
            // Right token, wrong worker.
            kind_of(
                s.complete_job(job.id, wa.id, lb.fencing_token, &json!({}), t)
                    .await,
            ),
            // Right worker, old token.
            kind_of(
                s.complete_job(job.id, wb.id, la.fencing_token, &json!({}), t)
                    .await,
            ),
        ];
        assert!(
            results.iter().all(|k| *k == StoreErrorKind::StaleLease),
            "{results:?}"
        );
        let err = s
            .complete_job(job.id, wa.id, 1, &json!({}), t)
            .await
            .expect_err("stale");
        assert!(matches!(err, StoreError::StaleLease { job_id, .. } if job_id == job.id));
        assert_eq!(s.get_job(job.id).await.expect("get"), before);
        // B finishes normally.
        let done = s
            .complete_job(job.id, wb.id, lb.fencing_token, &json!({"from": "b"}), t)
            .await
            .expect("b");
        assert_eq!(
            (done.state, done.result),
            (JobState::Done, Some(json!({"from": "b"})))
        );
    }

    pub async fn expiry_requeues_then_fails_after_max_attempts(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("rig", 1), T0).await.expect("worker");
        let job = s
            .enqueue_job(
                &NewJob {
                    max_attempts: 2,
                    ..NewJob::new(JobKind::K2pow, id, json!({}))
                },
                T0,
            )
            .await
            .expect("enqueue");
        s.lease_jobs(w.id, &[], T0, 100, 1).await.expect("lease 1");
        // Not yet expired.
        assert!(s.expire_leases(T0 + 100).await.expect("expire early").is_empty());
        let e = s.expire_leases(T0 + 101).await.expect("expire 1");
        assert_eq!(e[0].new_state, JobState::Queued);
        let j = s.get_job(job.id).await.expect("get");
        assert_eq!(
            (j.state, j.attempts, j.lease_expires_at),
            (JobState::Queued, 1, None)
        );
        s.lease_jobs(w.id, &[], T0 + 200, 100, 1).await.expect("lease 2");
        let e = s.expire_leases(T0 + 301).await.expect("expire 2");
        assert_eq!(e[0].new_state, JobState::Failed);
        let j = s.get_job(job.id).await.expect("get");
        assert_eq!((j.state, j.attempts), (JobState::Failed, 2));
        assert!(j.error.is_some());
        assert!(s
            .lease_jobs(w.id, &[], T0 + 400, 100, 1)
            .await
            .expect("nothing")
            .is_empty());
    }

    pub async fn fail_retry_cancel_assign(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("rig", 1), T0).await.expect("worker");
        let job = s
            .enqueue_job(&NewJob::new(JobKind::Verify, id, json!({})), T0)
            .await
            .expect("enqueue");
        let l = s
            .lease_jobs(w.id, &[], T0, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0);
        let retry = JobFailure {
            error: "disk busy".into(),
            retryable: true,
            retry_at: Some(T0 + 500),
        };
        let j = s
            .fail_job(job.id, w.id, l.fencing_token, &retry, T0 + 1)
            .await
            .expect("fail retryable");
        assert_eq!(
            (j.state, j.error.as_deref(), j.not_before),
            (JobState::Queued, Some("disk busy"), T0 + 500)
        );
        assert!(s
            .lease_jobs(w.id, &[], T0 + 499, LEASE_MS, 1)
            .await
            .expect("too early")
            .is_empty());
        let l = s
            .lease_jobs(w.id, &[], T0 + 500, LEASE_MS, 1)
            .await
            .expect("lease again")
            .remove(0);
        assert_eq!(l.fencing_token, 2);
        let fatal = JobFailure {
            error: "bad proof".into(),
            retryable: false,
            retry_at: None,
        };
        let j = s
            .fail_job(job.id, w.id, l.fencing_token, &fatal, T0 + 600)
            .await
            .expect("fail");
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(
            conflict_of(s.cancel_job(job.id, T0).await),
            ConflictKind::InvalidTransition
        );
        let j = s.retry_job(job.id, T0 + 700).await.expect("retry");
        assert_eq!((j.state, j.attempts, j.error), (JobState::Queued, 0, None));
        assert_eq!(
            conflict_of(s.retry_job(job.id, T0).await),
            ConflictKind::InvalidTransition
        );

        // Cancelling a leased job makes the worker's next report stale.
        let l = s
            .lease_jobs(w.id, &[], T0 + 800, LEASE_MS, 1)
            .await
            .expect("lease 3")
            .remove(0);
        assert_eq!(
            s.cancel_job(job.id, T0 + 801).await.expect("cancel").state,
            JobState::Cancelled
        );
        assert_eq!(
            kind_of(
                s.renew_lease(job.id, w.id, l.fencing_token, None, T0 + 802, LEASE_MS)
                    .await
            ),
            StoreErrorKind::StaleLease
        );
        assert_eq!(
            kind_of(s.cancel_job(Uuid::new_v4(), T0).await),
            StoreErrorKind::NotFound
        );

        // Exhausted attempts: a retryable failure fails for good.
        let j2 = s
            .enqueue_job(
                &NewJob {
                    max_attempts: 1,
                    ..NewJob::new(JobKind::Verify, id, json!({}))
                },
                T0,
            )
            .await
            .expect("enqueue 2");
        let l = s
            .lease_jobs(w.id, &[], T0 + 900, LEASE_MS, 1)
            .await
            .expect("lease j2")
            .remove(0);
        assert_eq!(l.job.id, j2.id);
        let j = s
            .fail_job(j2.id, w.id, l.fencing_token, &retry, T0 + 901)
            .await
            .expect("fail j2");
        assert_eq!(j.state, JobState::Failed);

        // Assignment only while queued.
        let j3 = s
            .enqueue_job(&NewJob::new(JobKind::Verify, id, json!({})), T0)
            .await
            .expect("enqueue 3");
        assert_eq!(
            s.assign_job(j3.id, Some(w.id), T0)
                .await
                .expect("assign")
                .assigned_worker_id,
            Some(w.id)
        );
        assert_eq!(
            s.assign_job(j3.id, None, T0)
                .await
                .expect("unassign")
                .assigned_worker_id,
            None
        );
        assert_eq!(
            conflict_of(s.assign_job(j2.id, Some(w.id), T0).await),
            ConflictKind::InvalidTransition
        );
    }

    pub async fn lease_respects_assignment_kinds_and_worker_state(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w1 = s.create_worker(&worker("w1", 1), T0).await.expect("w1");
        let w2 = s.create_worker(&worker("w2", 2), T0).await.expect("w2");
        let pinned = s
            .enqueue_job(
                &NewJob {
                    assigned_worker_id: Some(w1.id),
                    ..NewJob::new(JobKind::Init, id, json!({}))
                },
                T0,
            )
            .await
            .expect("pinned");
        let prove = s
            .enqueue_job(&NewJob::new(JobKind::Prove, id, json!({})), T0)
            .await
            .expect("prove");
        let later = s
            .enqueue_job(
                &NewJob {
                    not_before: T0 + 1000,
                    ..NewJob::new(JobKind::Init, id, json!({}))
                },
                T0,
            )
            .await
            .expect("later");
        assert_eq!(
            conflict_of(
                s.enqueue_job(
                    &NewJob {
                        assigned_worker_id: Some(Uuid::new_v4()),
                        ..NewJob::new(JobKind::Init, id, json!({}))
                    },
                    T0
                )
                .await
            ),
            ConflictKind::ForeignKey
        );

        // w2 may not take w1's job, nor a job of a kind it did not ask for, nor a future job.
        assert!(s
            .lease_jobs(w2.id, &[JobKind::Init], T0, LEASE_MS, 10)
            .await
            .expect("w2 init")
            .is_empty());
        // A draining worker gets nothing.
        s.set_worker_state(w1.id, WorkerState::Draining, T0)
            .await
            .expect("drain");
        assert!(s
            .lease_jobs(w1.id, &[], T0, LEASE_MS, 10)
            .await
            .expect("draining")
            .is_empty());
        s.set_worker_state(w1.id, WorkerState::Online, T0)
            .await
            .expect("online");
        let got: Vec<Uuid> = s
            .lease_jobs(w1.id, &[JobKind::Init], T0, LEASE_MS, 10)
            .await
            .expect("w1")
            .into_iter()
            .map(|l| l.job.id)
            .collect();
        assert_eq!(got, [pinned.id]);
        let got: Vec<Uuid> = s
            .lease_jobs(w2.id, &[JobKind::Prove, JobKind::K2pow], T0, LEASE_MS, 10)
            .await
            .expect("w2")
            .into_iter()
            .map(|l| l.job.id)
            .collect();
        assert_eq!(got, [prove.id]);
        let got: Vec<Uuid> = s
            .lease_jobs(w2.id, &[], T0 + 1000, LEASE_MS, 10)
            .await
            .expect("later")
            .into_iter()
            .map(|l| l.job.id)
            .collect();
        assert_eq!(got, [later.id]);
        assert_eq!(
            kind_of(s.lease_jobs(Uuid::new_v4(), &[], T0, LEASE_MS, 1).await),
            StoreErrorKind::NotFound
        );
    }

    pub async fn concurrent_leasing_never_hands_a_job_twice(db: TestDb) {
        let a = db.open().await;
        let b = db.open().await;
        let id = a
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        const JOBS: usize = 60;
        for i in 0..JOBS {
            let job = NewJob {
                priority: (i % 3) as i64,
                ..NewJob::new(JobKind::Init, id, json!({"i": i}))
            };
            a.enqueue_job(&job, T0 + i as i64).await.expect("enqueue");
        }
        let mut tasks = Vec::new();
        for w in 0..8u8 {
            let s = if w % 2 == 0 { a.clone() } else { b.clone() };
            let wid = s
                .create_worker(&worker(&format!("w{w}"), w + 1), T0)
                .await
                .expect("worker")
                .id;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s
                        .lease_jobs(wid, &[JobKind::Init], T0 + 100, LEASE_MS, 2)
                        .await
                        .expect("lease");
                    if got.is_empty() {
                        return mine;
                    }
                    for l in got {
                        assert_eq!(l.job.worker_id, Some(wid));
                        mine.push((l.job.id, wid, l.fencing_token));
                    }
                }
            }));
        }
        let mut seen = HashMap::new();
        for t in tasks {
            for (job, wid, token) in t.await.expect("join") {
                assert_eq!(token, 1);
                assert!(seen.insert(job, wid).is_none(), "job {job} leased twice");
            }
        }
        assert_eq!(seen.len(), JOBS);
        for (job, wid) in seen {
            let j = a.get_job(job).await.expect("get");
            assert_eq!(
                (j.state, j.worker_id, j.fencing_token),
                (JobState::Leased, Some(wid), 1)
            );
        }
    }

    pub async fn job_keys_and_filters(db: TestDb) {
        let s = db.open().await;
        let ia = s.create_identity(&identity("a", 1), T0).await.expect("a").id;
        let ib = s.create_identity(&identity("b", 2), T0).await.expect("b").id;
        let w = s.create_worker(&worker("rig", 1), T0).await.expect("worker");
        let keyed = |k: &str| NewJob {
            key: Some(k.to_owned()),
            ..NewJob::new(JobKind::Prove, ia, json!({}))
        };
        let j1 = s.enqueue_job(&keyed("prove/a/7"), T0).await.expect("keyed");
        assert_eq!(
            conflict_of(s.enqueue_job(&keyed("prove/a/7"), T0).await),
            ConflictKind::Duplicate
        );
        let l = s
            .lease_jobs(w.id, &[], T0, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0);
        assert_eq!(
            conflict_of(s.enqueue_job(&keyed("prove/a/7"), T0).await),
            ConflictKind::Duplicate
        );
        s.complete_job(j1.id, w.id, l.fencing_token, &json!({}), T0)
            .await
            .expect("complete");
        // A finished job frees its key.
        let j2 = s
            .enqueue_job(&keyed("prove/a/7"), T0 + 1)
            .await
            .expect("key reused");
        assert_eq!(j2.key.as_deref(), Some("prove/a/7"));
        assert_eq!(
            conflict_of(
                s.enqueue_job(&NewJob::new(JobKind::Init, Uuid::new_v4(), json!({})), T0)
                    .await
            ),
            ConflictKind::ForeignKey
        );
        s.enqueue_job(&NewJob::new(JobKind::Init, ib, json!({"x": 1})), T0 + 2)
            .await
            .expect("b init");
        let zero = NewJob {
            max_attempts: 0,
            ..NewJob::new(JobKind::Init, ib, json!({}))
        };
        assert_eq!(kind_of(s.enqueue_job(&zero, T0).await), StoreErrorKind::Invalid);

        let count = |f: JobFilter| {
            let s = s.clone();
            async move { s.list_jobs(&f).await.expect("list").len() }
        };
        assert_eq!(count(JobFilter::default()).await, 3);
        assert_eq!(
            count(JobFilter {
                identity_id: Some(ia),
                ..JobFilter::default()
            })
            .await,
            2
        );
        assert_eq!(
            count(JobFilter {
                kind: Some(JobKind::Init),
                ..JobFilter::default()
            })
            .await,
            1
        );
        assert_eq!(
            count(JobFilter {
                state: Some(JobState::Done),
                ..JobFilter::default()
            })
            .await,
            1
        );
        assert_eq!(
            count(JobFilter {
                worker_id: Some(w.id),
                ..JobFilter::default()
            })
            .await,
            1
        );
        assert_eq!(
            count(JobFilter {
                state: Some(JobState::Queued),
                identity_id: Some(ia),
                ..JobFilter::default()
            })
            .await,
            1
        );
        let page = s
            .list_jobs(&JobFilter {
                limit: 2,
                ..JobFilter::default()
            })
            .await
            .expect("page 1");
        let rest = s
            .list_jobs(&JobFilter {
                limit: 2,
                offset: 2,
                ..JobFilter::default()
            })
            .await
            .expect("page 2");
        assert_eq!((page.len(), rest.len()), (2, 1));
        // Newest first.
        assert!(page[0].created_at >= page[1].created_at && page[1].created_at >= rest[0].created_at);
    }

    pub async fn safety_rules(db: TestDb) {
        let s = db.open().await;
        let node = [1u8; 32];
        let (h1, h2, h3) = ([0xa1u8; 32], [0xa2u8; 32], [0xa3u8; 32]);
        // Initial ATX, epoch 5.
        assert_eq!(
            s.check_and_record_atx(&node, 5, &h1, None, T0)
                .await
                .expect("first"),
            Safety::Safe
        );
        // Same message again: harmless re-sign.
        assert_eq!(
            s.check_and_record_atx(&node, 5, &h1, None, T0 + 1)
                .await
                .expect("again"),
            Safety::Safe
        );
        // A different message for the same epoch: double publish.
        assert_eq!(
            s.check_and_record_atx(&node, 5, &h2, Some(&[9; 32]), T0)
                .await
                .expect("double"),
            Safety::NotSafe {
                existing_hash: h1,
                reason: NotSafeReason::DoublePublish { publish_epoch: 5 }
            }
        );
        // A second initial ATX in another epoch names the same (empty) previous ATX.
        assert_eq!(
            s.check_and_record_atx(&node, 6, &h2, None, T0)
                .await
                .expect("second initial"),
            Safety::NotSafe {
                existing_hash: h1,
                reason: NotSafeReason::PrevAtxReused {
                    prev_atx: None,
                    existing_epoch: 5
                }
            }
        );
        // The chain continues: epoch 6 names h1.
        assert_eq!(
            s.check_and_record_atx(&node, 6, &h2, Some(&h1), T0)
                .await
                .expect("next"),
            Safety::Safe
        );
        // Another successor of h1, in any epoch, is refused.
        assert_eq!(
            s.check_and_record_atx(&node, 7, &h3, Some(&h1), T0)
                .await
                .expect("fork"),
            Safety::NotSafe {
                existing_hash: h2,
                reason: NotSafeReason::PrevAtxReused {
                    prev_atx: Some(h1),
                    existing_epoch: 6
                }
            }
        );
        // Same message, different previous ATX: inconsistent input, refused.
        assert!(matches!(
            s.check_and_record_atx(&node, 6, &h2, Some(&h3), T0).await.expect("mismatch"),
            Safety::NotSafe { reason: NotSafeReason::PrevAtxMismatch { recorded_prev_atx: Some(p) }, .. } if p == h1
        ));
        // Other identities are independent.
        assert_eq!(
            s.check_and_record_atx(&[2; 32], 5, &h3, None, T0)
                .await
                .expect("other"),
            Safety::Safe
        );

        let recs = s.list_atx_records(&node).await.expect("records");
        assert_eq!(
            recs.iter()
                .map(|r| (r.publish_epoch, r.message_hash, r.prev_atx))
                .collect::<Vec<_>>(),
            [(5, h1, None), (6, h2, Some(h1))]
        );
        // Append-only, even behind the store's back.
        let raw = db.raw().await;
        assert!(sqlx::query("DELETE FROM atx_safety").execute(&raw).await.is_err());
        assert!(sqlx::query("UPDATE atx_safety SET message_hash = node_id")
            .execute(&raw)
            .await
            .is_err());
        // The unique constraints refuse a second ATX for an epoch even without the check.
        let dup = sqlx::query(
            "INSERT INTO atx_safety (node_id, publish_epoch, message_hash, prev_atx, recorded_at) \
             VALUES ($1, 5, $2, $3, 0)",
        )
        .bind(hex::encode(node))
        .bind(hex::encode(h3))
        .bind(hex::encode([7u8; 32]))
        .execute(&raw)
        .await;
        assert!(dup.is_err());
        assert_eq!(s.list_atx_records(&node).await.expect("records").len(), 2);
    }

    pub async fn safety_grants_keystore_permits(db: TestDb) {
        use orchestrator::keystore::{atx_v1_message, NodeId};
        use orchestrator::store::AtxSigning;
        let s = db.open().await;
        let node = NodeId::from_bytes([4; 32]);
        let (atx1, atx2) = ([0x11u8; 32], [0x22u8; 32]);
        let msg1 = atx_v1_message(3, &atx1);
        let permit = match s
            .grant_atx_signature(node, 3, &atx1, None, &msg1, T0)
            .await
            .expect("grant")
        {
            AtxSigning::Permitted(p) => p,
            other => panic!("expected a permit, got {other:?}"),
        };
        assert_eq!((permit.node_id(), permit.publish_epoch()), (node, 3));
        assert_eq!(permit.message_hash(), blake3::hash(&msg1).as_bytes());
        let msg2 = atx_v1_message(3, &atx2);
        assert_eq!(
            s.grant_atx_signature(node, 3, &atx2, None, &msg2, T0)
                .await
                .expect("refuse"),
            AtxSigning::Refused {
                existing_hash: atx1,
                reason: NotSafeReason::DoublePublish { publish_epoch: 3 }
            }
        );
        // A message for another ATX than the one recorded gets no permit and records nothing.
        let err = s
            .grant_atx_signature(node, 4, &atx2, Some(&atx1), &msg1, T0)
            .await
            .expect_err("mismatch");
        assert_eq!(err.kind(), StoreErrorKind::Invalid);
        assert_eq!(
            s.list_atx_records(node.as_bytes()).await.expect("records").len(),
            1
        );
    }

    /// One ballot message per identity and layer: the same message again is Safe, another one is
    /// refused (MultipleBallots) and records nothing; the records survive a reopen and are
    /// append-only; a second store on the same database (a second coordinator) is refused too.
    pub async fn safety_ballots(db: TestDb) {
        use orchestrator::keystore::NodeId;
        use orchestrator::store::BallotSigning;
        let s = db.open().await;
        let node = NodeId::from_bytes([6; 32]);
        use node_bridge::atx::Scale;
        use node_bridge::ballot::BallotMetadata;
        let meta = |layer: u32, h: u8| -> &'static [u8] {
            let m = BallotMetadata {
                layer,
                msg_hash: [h; 32],
            };
            Box::leak(m.to_bytes().into_boxed_slice())
        };
        let (m1, m2) = (meta(30, 1), meta(30, 2));
        let grant = |s: Store, layer: u32, m: &'static [u8]| async move {
            s.grant_ballot_signature(node, layer, m, T0)
                .await
                .expect("ballot safety")
        };
        let BallotSigning::Permitted(p) = grant(s.clone(), 30, m1).await else {
            panic!("first ballot refused");
        };
        assert_eq!((p.node_id(), p.layer()), (node, 30));
        assert_eq!(p.message_hash(), blake3::hash(m1).as_bytes());
        assert!(matches!(
            grant(s.clone(), 30, m1).await,
            BallotSigning::Permitted(_)
        ));
        assert_eq!(
            grant(s.clone(), 30, m2).await,
            BallotSigning::Refused {
                existing_hash: *blake3::hash(m1).as_bytes(),
                reason: NotSafeReason::DoubleBallot { layer: 30 }
            }
        );
        assert!(matches!(
            grant(s.clone(), 31, meta(31, 2)).await,
            BallotSigning::Permitted(_)
        ));
        // A message for another layer than the one recorded gets no permit and records nothing.
        let err = s
            .grant_ballot_signature(node, 32, meta(33, 2), T0)
            .await
            .expect_err("layer mismatch");
        assert_eq!(err.kind(), StoreErrorKind::Invalid);
        assert!(matches!(
            grant(s.clone(), 32, meta(32, 9)).await,
            BallotSigning::Permitted(_)
        ));
        // Another identity is independent.
        assert_eq!(
            s.check_and_record_ballot(&[7; 32], 30, blake3::hash(m2).as_bytes(), T0)
                .await
                .expect("other identity"),
            Safety::Safe
        );
        // A second store (process) on the same database sees the records.
        let other = db.open().await;
        assert!(matches!(
            grant(other.clone(), 30, m2).await,
            BallotSigning::Refused { .. }
        ));
        assert!(matches!(
            grant(other, 31, meta(31, 2)).await,
            BallotSigning::Permitted(_)
        ));
        let raw = db.raw().await;
        assert!(sqlx::query("DELETE FROM ballot_safety")
            .execute(&raw)
            .await
            .is_err());
        assert!(sqlx::query("UPDATE ballot_safety SET message_hash = node_id")
            .execute(&raw)
            .await
            .is_err());
    }

    pub async fn safety_survives_restart(db: TestDb) {
        let s = db.open_exclusive().await.expect("open");
        let node = [3u8; 32];
        assert_eq!(
            s.check_and_record_atx(&node, 10, &[1; 32], Some(&[5; 32]), T0)
                .await
                .expect("rec"),
            Safety::Safe
        );
        s.close().await;
        let s = db.open_exclusive().await.expect("reopen");
        assert!(matches!(
            s.check_and_record_atx(&node, 10, &[2; 32], Some(&[6; 32]), T0).await.expect("after restart"),
            Safety::NotSafe { existing_hash, .. } if existing_hash == [1; 32]
        ));
        assert_eq!(
            s.check_and_record_atx(&node, 10, &[1; 32], Some(&[5; 32]), T0)
                .await
                .expect("same"),
            Safety::Safe
        );
    }

    pub async fn safety_race_between_two_processes(db: TestDb) {
        // Two stores = two connection pools = two coordinator processes (without the lock that
        // would normally stop the second).
        let a = db.open().await;
        let b = db.open().await;
        const EPOCHS: u32 = 4;
        const CONTENDERS: u8 = 12;
        let mut tasks = Vec::new();
        for epoch in 0..EPOCHS {
            for c in 0..CONTENDERS {
                let s = if c % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    // Pairs of contenders sign the same message (a legitimate retry).
                    let hash = [c / 2 + 1; 32];
                    let prev = [100 + epoch as u8; 32];
                    let r = s
                        .check_and_record_atx(&[7; 32], epoch, &hash, Some(&prev), T0)
                        .await;
                    (epoch, hash, r.expect("safety check"))
                }));
            }
        }
        let mut safe: HashMap<u32, HashSet<[u8; 32]>> = HashMap::new();
        for t in tasks {
            let (epoch, hash, answer) = t.await.expect("join");
            match answer {
                Safety::Safe => {
                    safe.entry(epoch).or_default().insert(hash);
                }
                Safety::NotSafe {
                    existing_hash,
                    reason,
                } => {
                    assert_ne!(existing_hash, hash);
                    assert_eq!(reason, NotSafeReason::DoublePublish { publish_epoch: epoch });
                }
            }
        }
        let recs = a.list_atx_records(&[7; 32]).await.expect("records");
        assert_eq!(recs.len(), EPOCHS as usize);
        for r in recs {
            let winners = &safe[&r.publish_epoch];
            assert_eq!(winners.len(), 1, "epoch {}: {winners:?}", r.publish_epoch);
            assert!(winners.contains(&r.message_hash));
        }
    }

    pub async fn coordinator_lock(db: TestDb) {
        let first = db.open_exclusive().await.expect("first coordinator");
        assert!(first.is_exclusive());
        first.ensure_lock_held().await.expect("held");
        let err = db
            .open_exclusive()
            .await
            .expect_err("second coordinator must be refused");
        assert_eq!(err.kind(), StoreErrorKind::Locked);
        let msg = err.to_string();
        match db.backend {
            Backend::Sqlite => assert!(msg.contains("state.db.lock") && msg.contains("pid="), "{msg}"),
            Backend::Postgres => assert!(
                msg.contains("advisory lock") && msg.contains("PostgreSQL database"),
                "{msg}"
            ),
        }
        assert!(msg.contains("another smeshfleet coordinator"), "{msg}");
        // Tools without the lock still work beside it; clones share the lock.
        let tool = db.open().await;
        assert!(!tool.is_exclusive());
        tool.list_identities().await.expect("tool reads");
        let clone = first.clone();
        drop(first);
        assert_eq!(
            db.open_exclusive().await.expect_err("clone still holds").kind(),
            StoreErrorKind::Locked
        );
        // Dropping the last clone releases it (PostgreSQL: when the server sees the session end).
        drop(clone);
        let deadline = Instant::now() + Duration::from_secs(10);
        let again = loop {
            match db.open_exclusive().await {
                Ok(s) => break s,
                Err(e) if e.kind() == StoreErrorKind::Locked && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("lock not released on drop: {e}"),
            }
        };
        again.ensure_lock_held().await.expect("held again");
        // close() releases at once.
        again.close().await;
        let last = db.open_exclusive().await.expect("after close");
        drop(last);
    }

    pub async fn proving_requests_and_proofs(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let new = NewProvingRequest {
            identity_id: id,
            publish_epoch: 7,
            challenge: [0xaa; 32],
            known_at: T0,
            deadline: T0 + 1000,
        };
        let (r, created) = s.create_proving_request(&new, T0).await.expect("create");
        assert!(created);
        assert_eq!(
            (r.first_nonce, r.state, r.challenge),
            (0, ProvingRequestState::Pending, [0xaa; 32])
        );
        // The same challenge again: the same request, nothing new.
        let (again, created) = s.create_proving_request(&new, T0 + 5).await.expect("again");
        assert!(!created);
        assert_eq!(again, r);
        // Another challenge for the same epoch: a conflict, nothing changed.
        let other = NewProvingRequest {
            challenge: [0xbb; 32],
            ..new.clone()
        };
        assert_eq!(
            conflict_of(s.create_proving_request(&other, T0).await),
            ConflictKind::Duplicate
        );
        assert_eq!(
            s.get_proving_request(id, 7).await.expect("get").challenge,
            [0xaa; 32]
        );
        // An unknown identity.
        let ghost = NewProvingRequest {
            identity_id: Uuid::new_v4(),
            ..new.clone()
        };
        assert_eq!(
            conflict_of(s.create_proving_request(&ghost, T0).await),
            ConflictKind::ForeignKey
        );
        // Another epoch is another request.
        s.create_proving_request(
            &NewProvingRequest {
                publish_epoch: 8,
                ..other.clone()
            },
            T0,
        )
        .await
        .expect("epoch 8");
        let pending = s.list_pending_proving_requests().await.expect("pending");
        assert_eq!(
            pending.iter().map(|r| r.publish_epoch).collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert_eq!(
            s.find_pending_proving_request(id, &[0xbb; 32])
                .await
                .expect("find")
                .map(|r| r.publish_epoch),
            Some(8)
        );
        assert!(s
            .find_pending_proving_request(id, &[0xcc; 32])
            .await
            .expect("find")
            .is_none());

        // Passes advance the first nonce; a late, older pass does not move it back.
        assert_eq!(
            s.advance_first_nonce(id, 7, 64, T0 + 1)
                .await
                .expect("advance")
                .first_nonce,
            64
        );
        assert_eq!(
            s.advance_first_nonce(id, 7, 32, T0 + 2)
                .await
                .expect("late")
                .first_nonce,
            64
        );

        // A proof marks its request proved, once.
        let proof = StoredProof {
            identity_id: id,
            publish_epoch: 7,
            challenge: [0xaa; 32],
            proof: json!({"nonce": 70, "indices": "AAEC", "pow": 5}),
            nonce: 70,
            job_id: Uuid::new_v4(),
            verified_at: T0 + 10,
        };
        let stored = s.record_proof(&proof).await.expect("record");
        assert_eq!(stored, proof);
        assert_eq!(
            s.get_proving_request(id, 7).await.expect("get").state,
            ProvingRequestState::Proved
        );
        assert_eq!(
            conflict_of(s.record_proof(&proof).await),
            ConflictKind::InvalidTransition
        );
        // A proof of another challenge than the request's is refused.
        let wrong = StoredProof {
            publish_epoch: 8,
            challenge: [0xaa; 32],
            ..proof.clone()
        };
        assert_eq!(
            conflict_of(s.record_proof(&wrong).await),
            ConflictKind::InvalidTransition
        );
        assert_eq!(s.list_proofs(id).await.expect("proofs"), vec![proof]);
        // A proved request advances no more, and is no longer pending.
        assert_eq!(
            s.advance_first_nonce(id, 7, 128, T0 + 3)
                .await
                .expect("advance")
                .first_nonce,
            64
        );
        let pending = s.list_pending_proving_requests().await.expect("pending");
        assert_eq!(
            pending.iter().map(|r| r.publish_epoch).collect::<Vec<_>>(),
            vec![8]
        );
        // Deleting the identity removes its requests and proofs.
        s.delete_identity(id).await.expect("delete");
        assert!(s
            .list_pending_proving_requests()
            .await
            .expect("pending")
            .is_empty());
        assert!(s.list_proofs(id).await.expect("proofs").is_empty());
    }

    pub async fn returned_lease_is_not_an_attempt(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("a", 1), T0).await.expect("worker");
        let job = s
            .enqueue_job(&NewJob::new(JobKind::Prove, id, json!({})), T0)
            .await
            .expect("enqueue");
        let l = s
            .lease_jobs(w.id, &[], T0, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0);
        assert_eq!(l.job.attempts, 1);
        let back = s
            .return_lease(job.id, w.id, l.fencing_token, T0 + 2000, T0 + 1)
            .await
            .expect("return");
        assert_eq!(
            (back.state, back.attempts, back.not_before),
            (JobState::Queued, 0, T0 + 2000)
        );
        // Not before its time; then with a new token.
        assert!(s
            .lease_jobs(w.id, &[], T0 + 1999, LEASE_MS, 1)
            .await
            .expect("early")
            .is_empty());
        let again = s
            .lease_jobs(w.id, &[], T0 + 2000, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0);
        assert!(again.fencing_token > l.fencing_token);
        // The old lease is stale.
        assert_eq!(
            kind_of(s.return_lease(job.id, w.id, l.fencing_token, T0, T0 + 2001).await),
            StoreErrorKind::StaleLease
        );
    }

    pub async fn empty_prove_pass_is_not_a_finished_proof(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("a", 1), T0).await.expect("worker");
        for found in [false, true] {
            s.enqueue_job(&NewJob::new(JobKind::Prove, id, json!({})), T0)
                .await
                .expect("enqueue");
            let l = s
                .lease_jobs(w.id, &[], T0, LEASE_MS, 1)
                .await
                .expect("lease")
                .remove(0);
            s.complete_job(l.job.id, w.id, l.fencing_token, &json!({"found": found}), T0 + 1)
                .await
                .expect("complete");
        }
        let finished = s
            .list_finished_jobs_since(&[id], &[JobKind::Prove], T0)
            .await
            .expect("finished");
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].result, Some(json!({"found": true})));
    }

    pub async fn bad_ranges_are_cut_from_recorded_progress(db: TestDb) {
        let s = db.open().await;
        let id = s
            .create_identity(&identity("a", 1), T0)
            .await
            .expect("identity")
            .id;
        let w = s.create_worker(&worker("a", 1), T0).await.expect("worker");
        let job = s
            .enqueue_job(&NewJob::new(JobKind::Init, id, json!({})), T0)
            .await
            .expect("job");
        let tok = s
            .lease_jobs(w.id, &[], T0, LEASE_MS, 1)
            .await
            .expect("lease")
            .remove(0)
            .fencing_token;
        for (start, end, file) in [(0, 1024, 0), (1024, 2048, 1)] {
            let r = RangeReport {
                identity_id: id,
                file_index: file,
                start_label: start,
                end_label: end,
                job_id: job.id,
                worker_id: w.id,
                fencing_token: tok,
            };
            s.record_range_done(&r, T0).await.expect("record");
        }
        let rev = files_rev(&s, id).await;
        // A hole inside file 0, the end of file 0 with the start of file 1, and nothing.
        let forgotten = s
            .remove_label_ranges(id, &[(100, 200), (1000, 1100), (5000, 6000)], T0 + 1)
            .await
            .expect("cut");
        assert_eq!(forgotten, 100 + 100);
        let runs: Vec<(u64, u64, u64)> = s
            .list_init_ranges(id)
            .await
            .expect("ranges")
            .iter()
            .map(|r| (r.start_label, r.end_label, r.file_index))
            .collect();
        assert_eq!(runs, vec![(0, 100, 0), (200, 1000, 0), (1100, 2048, 1)]);
        assert_eq!(s.labels_done(id).await.expect("done"), 2048 - 200);
        assert!(
            files_rev(&s, id).await > rev,
            "the reconcile loop must see the change"
        );
        // An empty range is refused and changes nothing.
        assert_eq!(
            kind_of(s.remove_label_ranges(id, &[(0, 10), (7, 7)], T0 + 2).await),
            StoreErrorKind::Invalid
        );
        assert_eq!(s.labels_done(id).await.expect("done"), 2048 - 200);
    }

    pub async fn builder_challenge_first_writer_wins(db: TestDb) {
        let s = db.open().await;
        let node = [7u8; 32];
        let first = s
            .save_prepared_challenge(&node, 3, &[1, 2, 3], &[0xa1; 32], T0)
            .await
            .expect("first");
        assert_eq!(first, (vec![1, 2, 3], [0xa1; 32]));
        // Another challenge for the same identity and epoch: the first comes back, unchanged.
        let second = s
            .save_prepared_challenge(&node, 3, &[9, 9], &[0xb2; 32], T0 + 5)
            .await
            .expect("second");
        assert_eq!(second, first);
        let stored = s
            .prepared_challenge(&node, 3)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            (
                stored.node_id,
                stored.publish_epoch,
                stored.challenge,
                stored.challenge_hash,
                stored.created_at
            ),
            (node, 3, vec![1, 2, 3], [0xa1; 32], T0)
        );
        // Other epochs and other identities are their own.
        assert_eq!(
            s.save_prepared_challenge(&node, 4, &[4], &[0xc3; 32], T0)
                .await
                .expect("epoch 4"),
            (vec![4], [0xc3; 32])
        );
        assert_eq!(
            s.save_prepared_challenge(&[8; 32], 3, &[5], &[0xd4; 32], T0)
                .await
                .expect("other node"),
            (vec![5], [0xd4; 32])
        );
        // No bytes is refused.
        assert_eq!(
            kind_of(s.save_prepared_challenge(&node, 5, &[], &[0; 32], T0).await),
            StoreErrorKind::Invalid
        );
        // Two processes racing for one epoch: both get the same challenge.
        let a = db.open().await;
        let b = db.open().await;
        let (ra, rb) = tokio::join!(
            a.save_prepared_challenge(&node, 6, &[0xaa], &[0xaa; 32], T0),
            b.save_prepared_challenge(&node, 6, &[0xbb], &[0xbb; 32], T0),
        );
        let (ra, rb) = (ra.expect("a"), rb.expect("b"));
        assert_eq!(ra, rb);
        let kept = s
            .prepared_challenge(&node, 6)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!((kept.challenge, kept.challenge_hash), ra);
    }

    pub async fn builder_challenge_survives_reopen(db: TestDb) {
        let s = db.open_exclusive().await.expect("open");
        let node = [3u8; 32];
        s.save_prepared_challenge(&node, 10, &[1; 40], &[0x11; 32], T0)
            .await
            .expect("save");
        s.record_poet_registration(
            &node,
            10,
            "fast",
            &PoetRegistrationOutcome::Accepted {
                round: 9,
                round_end_ms: 1234,
            },
            T0,
        )
        .await
        .expect("registration");
        s.close().await;
        let s = db.open_exclusive().await.expect("reopen");
        assert_eq!(
            s.save_prepared_challenge(&node, 10, &[2; 40], &[0x22; 32], T0 + 1)
                .await
                .expect("after restart"),
            (vec![1; 40], [0x11; 32])
        );
        let regs = s.poet_registrations(&node, 10).await.expect("registrations");
        assert_eq!(regs.len(), 1);
        assert!(regs[0].accepted());
    }

    pub async fn builder_poet_registrations_recorded_and_listed(db: TestDb) {
        let s = db.open().await;
        let node = [4u8; 32];
        let accepted = PoetRegistrationOutcome::Accepted {
            round: 7,
            round_end_ms: 5_000,
        };
        let failed = |e: &str| PoetRegistrationOutcome::Failed { error: e.to_owned() };
        let rec = s
            .record_poet_registration(&node, 2, "slow", &accepted, T0)
            .await
            .expect("slow");
        assert_eq!(
            (
                rec.node_id,
                rec.publish_epoch,
                rec.poet.as_str(),
                &rec.outcome,
                rec.registered_at
            ),
            (node, 2, "slow", &accepted, T0)
        );
        s.record_poet_registration(&node, 2, "fast", &failed("refused"), T0)
            .await
            .expect("fast");
        s.record_poet_registration(&node, 3, "fast", &accepted, T0)
            .await
            .expect("other epoch");
        s.record_poet_registration(&[5; 32], 2, "fast", &accepted, T0)
            .await
            .expect("other node");
        let list = |regs: Vec<orchestrator::store::PoetRegistrationRecord>| {
            regs.into_iter()
                .map(|r| (r.poet, r.outcome, r.registered_at))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list(s.poet_registrations(&node, 2).await.expect("list")),
            vec![
                ("fast".to_owned(), failed("refused"), T0),
                ("slow".to_owned(), accepted.clone(), T0),
            ]
        );
        // A retry that succeeds replaces the failure; a later failure does not hide an acceptance.
        let retried = PoetRegistrationOutcome::Accepted {
            round: 7,
            round_end_ms: 5_001,
        };
        let rec = s
            .record_poet_registration(&node, 2, "fast", &retried, T0 + 1)
            .await
            .expect("retry");
        assert_eq!(
            (rec.outcome.clone(), rec.registered_at),
            (retried.clone(), T0 + 1)
        );
        let rec = s
            .record_poet_registration(&node, 2, "fast", &failed("already registered"), T0 + 2)
            .await
            .expect("late failure");
        assert_eq!((rec.outcome, rec.registered_at), (retried.clone(), T0 + 1));
        assert_eq!(
            list(s.poet_registrations(&node, 2).await.expect("list")),
            vec![
                ("fast".to_owned(), retried, T0 + 1),
                ("slow".to_owned(), accepted, T0),
            ]
        );
        // Values the schema cannot hold are refused.
        assert_eq!(
            kind_of(
                s.record_poet_registration(
                    &node,
                    2,
                    "huge",
                    &PoetRegistrationOutcome::Accepted {
                        round: u64::MAX,
                        round_end_ms: 0
                    },
                    T0
                )
                .await
            ),
            StoreErrorKind::Invalid
        );
    }

    pub async fn builder_unknown_is_none(db: TestDb) {
        let s = db.open().await;
        assert_eq!(s.prepared_challenge(&[1; 32], 1).await.expect("get"), None);
        assert!(s.poet_registrations(&[1; 32], 1).await.expect("list").is_empty());
        s.save_prepared_challenge(&[1; 32], 1, &[1], &[1; 32], T0)
            .await
            .expect("save");
        assert_eq!(s.prepared_challenge(&[1; 32], 2).await.expect("get"), None);
        assert_eq!(s.prepared_challenge(&[2; 32], 1).await.expect("get"), None);
    }
}

#[tokio::test]
async fn sqlite_data_dir_and_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data dir?#%");
    let s = Store::open_in_data_dir(&data).await.expect("open in data dir");
    assert!(s.is_exclusive());
    assert!(data.join("state.db").is_file());
    assert!(data.join("state.db.lock").is_file());
    assert_eq!(
        Store::open_in_data_dir(&data).await.expect_err("locked").kind(),
        StoreErrorKind::Locked
    );
    s.create_identity(&identity("x", 1), T0).await.expect("write");
    drop(s);
    let s = Store::open_in_data_dir(&data).await.expect("reopen after drop");
    assert_eq!(s.list_identities().await.expect("read").len(), 1);

    let mem = Store::connect("sqlite::memory:").await.expect("in memory");
    mem.create_identity(&identity("m", 1), T0).await.expect("write");
    assert_eq!(mem.list_identities().await.expect("read").len(), 1);

    for bad in ["mysql://x/y", "nonsense", "postgres://u:secret@[::1/db"] {
        let err = Store::connect(bad).await.expect_err("bad url");
        assert_eq!(err.kind(), StoreErrorKind::Invalid, "{bad}: {err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
