//! The storage worker's side: the chunk route. See the module above for the protocol.
//!
//! A striped identity keeps one official directory on this rig whether its labels were computed
//! here or arrived by stream: the first batch of a grant removes stale copies of the file from the
//! rig's other disks (as the local init executor does), and [`stripe::sync_home`] runs after the
//! first batch of a grant (the new file is reachable from the home from its first label on),
//! after a batch that carried a VRF-nonce candidate (the home gets the merged nonce) and after the
//! batch that ends the grant or the file. A write or sync that fails with `ENOSPC` (or `EDQUOT`)
//! is answered 507 `disk_full`, naming the disk, not 500 `io`.
//!
//! [`stripe::sync_home`]: crate::exec::stripe::sync_home

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use post::backend::VrfCandidate;
use post::data::file_name;
use protocol::{DiskInfo, StreamAuthorization};
use uuid::Uuid;

use super::{
    decode_candidate, ChunkAck, CHUNK_PATH, HEADER_BLAKE3, HEADER_START, HEADER_VRF, MAX_CHUNK_BYTES,
};
use crate::client::{Client, ClientError};
use crate::exec::init::{ensure_metadata, metadata_for, remove_stale_copies, InitTask};
use crate::exec::{identity_dir, stripe, ExecError};

/// Where the server gets the coordinator's answers about tokens.
pub enum Authorizer {
    /// A client that already holds this worker's credential.
    Client(Client),
    /// The coordinator's URL and this worker's data directory: the credential is read from
    /// `<dir>/credential` when first needed (the worker enrolls after the server starts).
    Lazy { coordinator: String, data_dir: PathBuf },
}

/// The chunk route's state.
pub struct StreamServer {
    authorizer: Authorizer,
    client: tokio::sync::OnceCell<Client>,
    disks: Vec<DiskInfo>,
    /// BLAKE3 of a token -> what it allows, until when.
    cache: Mutex<HashMap<[u8; 32], (StreamAuthorization, Instant)>>,
    /// Labels spot-checked per batch: recomputed on this CPU and compared (0: none).
    spot_checks: u32,
    /// Grants whose directory was prepared (stale copies removed, home links made).
    prepared: Mutex<HashSet<(Uuid, i64)>>,
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("disks", &self.disks.len())
            .finish_non_exhaustive()
    }
}

/// A refused batch: the HTTP status and the error contract's code.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ChunkError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// With `disk_full`: the free bytes the storage worker measured on the target disk.
    pub free_bytes: Option<u64>,
}

impl ChunkError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ChunkError {
            status,
            code,
            message: message.into(),
            free_bytes: None,
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ChunkError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(free) = self.free_bytes {
            body["error"]["free_bytes"] = free.into();
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<ExecError> for ChunkError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Invalid(m) => ChunkError::unprocessable("invalid", m),
            ExecError::DiskFull { free_bytes, .. } => disk_full(e.to_string(), Some(free_bytes)),
            ExecError::Io {
                ref source, ref path, ..
            } if is_storage_full(source) => {
                let free = path.parent().and_then(crate::exec::init::free_bytes);
                disk_full(e.to_string(), free)
            }
            e => ChunkError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
        }
    }
}

/// 507 `disk_full`: the target disk has no room for the batch. The sender does not retry it: its
/// job fails for good and the coordinator moves the file to another disk.
fn disk_full(message: String, free_bytes: Option<u64>) -> ChunkError {
    ChunkError {
        free_bytes,
        ..ChunkError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
    }
}

/// `ENOSPC` (or `EDQUOT`): the disk, not the request, is at fault.
fn is_storage_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

impl StreamServer {
    pub fn new(authorizer: Authorizer, disks: Vec<DiskInfo>) -> Self {
        StreamServer {
            authorizer,
            client: tokio::sync::OnceCell::new(),
            disks,
            cache: Mutex::default(),
            spot_checks: 1,
            prepared: Mutex::default(),
        }
    }

    /// Labels recomputed and compared per batch (default 1; 0 turns the check off).
    pub fn with_spot_checks(mut self, n: u32) -> Self {
        self.spot_checks = n;
        self
    }

    /// The routes, with a body limit fit for [`MAX_CHUNK_BYTES`].
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(CHUNK_PATH, post(chunk))
            .layer(DefaultBodyLimit::max(MAX_CHUNK_BYTES))
            .with_state(self)
    }

    async fn client(&self) -> Result<&Client, ChunkError> {
        self.client
            .get_or_try_init(|| async {
                match &self.authorizer {
                    Authorizer::Client(c) => Ok(c.clone()),
                    Authorizer::Lazy {
                        coordinator,
                        data_dir,
                    } => {
                        let unavailable = |m: String| {
                            ChunkError::new(StatusCode::SERVICE_UNAVAILABLE, "coordinator_unreachable", m)
                        };
                        let cred = tokio::fs::read_to_string(data_dir.join("credential"))
                            .await
                            .map_err(|e| unavailable(format!("this worker is not enrolled yet: {e}")))?;
                        Client::new(coordinator, Some(cred.trim().to_owned()))
                            .map_err(|e| unavailable(e.to_string()))
                    }
                }
            })
            .await
    }

    /// What `token` allows: from the cache while fresh, else from the coordinator.
    async fn authorize(&self, token: &str) -> Result<StreamAuthorization, ChunkError> {
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        if let Ok(mut c) = self.cache.lock() {
            let now = Instant::now();
            c.retain(|_, (_, until)| *until > now);
            if let Some((a, _)) = c.get(&key) {
                return Ok(a.clone());
            }
        }
        let client = self.client().await?;
        let auth = client.stream_authorize(token).await.map_err(|e| match e {
            ClientError::Api {
                status: 409, message, ..
            } => ChunkError::new(StatusCode::CONFLICT, "stale_lease", message),
            ClientError::Api {
                status: 403 | 404,
                message,
                ..
            } => ChunkError::new(StatusCode::FORBIDDEN, "stream_token_invalid", message),
            e => ChunkError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "coordinator_unreachable",
                e.to_string(),
            ),
        })?;
        let ttl = Duration::from_millis(auth.valid_for_ms.min(60_000));
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, (auth.clone(), Instant::now() + ttl));
        }
        Ok(auth)
    }

    fn disk(&self, id: &str) -> Result<&DiskInfo, ChunkError> {
        self.disks
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ChunkError::unprocessable("invalid", format!("disk {id} is not on this rig")))
    }

    /// The identity's directory on every disk of this rig, in the rig's disk order.
    fn rig_dirs(&self, node_id: &str) -> Vec<PathBuf> {
        self.disks.iter().map(|d| identity_dir(d, node_id)).collect()
    }

    /// The first batch of a grant: the identity's metadata is ensured and copies of the file left
    /// on the rig's other disks are removed, as the local executor does. Returns whether this was
    /// the grant's first batch.
    fn prepare(&self, auth: &StreamAuthorization, disk: &DiskInfo, dir: &Path) -> Result<bool, ChunkError> {
        let key = (auth.job_id, auth.fencing_token);
        if self.prepared.lock().map(|p| p.contains(&key)).unwrap_or(false) {
            return Ok(false);
        }
        let md = metadata_for(&auth.identity)?;
        ensure_metadata(dir, &md)?;
        let task = InitTask {
            identity: auth.identity.clone(),
            dir: dir.to_path_buf(),
            disk_id: disk.id.clone(),
            disk_dir: PathBuf::from(&disk.mount),
            rig_dirs: self.rig_dirs(&auth.identity.node_id),
            file_index: u64::from(auth.file_index),
            start: auth.range.start,
            end: auth.range.end,
            resume_from: 0,
            cut: Default::default(),
        };
        remove_stale_copies(&task)?;
        if let Ok(mut p) = self.prepared.lock() {
            p.insert(key);
        }
        Ok(true)
    }

    /// [`stripe::sync_home`] for the identity (links to the files on the rig's other disks, the
    /// merged nonce). A failure is logged, not fatal: the labels are durable, only the official
    /// directory lags, and the next sync catches up.
    fn sync_home(&self, auth: &StreamAuthorization) {
        let dirs = self.rig_dirs(&auth.identity.node_id);
        let n = auth.identity.scrypt_n as usize;
        if let Err(e) = stripe::sync_home(&dirs, n) {
            tracing::warn!(error = %e, "could not update the identity's home directory");
        }
    }

    /// Checks and writes one batch (blocking: file I/O and scrypt).
    pub fn write_chunk(
        &self,
        auth: &StreamAuthorization,
        start: u64,
        labels: &[u8],
        candidate: Option<VrfCandidate>,
    ) -> Result<ChunkAck, ChunkError> {
        let count = (labels.len() / 16) as u64;
        let end = start.saturating_add(count);
        if labels.is_empty() || !labels.len().is_multiple_of(16) {
            return Err(ChunkError::bad(
                "bad_request",
                "the body must be a whole number of 16-byte labels",
            ));
        }
        if start < auth.range.start || end > auth.range.end {
            return Err(ChunkError::unprocessable(
                "outside_grant",
                format!(
                    "labels [{start}, {end}) are outside the granted range [{}, {})",
                    auth.range.start, auth.range.end
                ),
            ));
        }
        let id = &auth.identity;
        let md = metadata_for(id)?;
        let (n, file_labels) = crate::exec::checked_range(id, u64::from(auth.file_index), start, end)
            .map_err(|e| ChunkError::unprocessable("outside_grant", e.to_string()))?;
        let commitment = md.commitment();
        // Spot checks: labels at places the sender cannot predict (they depend on the bytes).
        let digest = blake3::hash(labels);
        for k in 0..self.spot_checks {
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest.as_bytes()[(k as usize % 4) * 8..(k as usize % 4) * 8 + 8]);
            let off = (u64::from_le_bytes(b).wrapping_add(u64::from(k))) % count;
            let want = post::scrypt::label32(&commitment, start + off, n);
            let at = usize::try_from(off * 16).map_err(|_| ChunkError::bad("bad_request", "offset"))?;
            if labels[at..at + 16] != want[..16] {
                return Err(ChunkError::unprocessable(
                    "bad_labels",
                    format!("label {} is not the label of that index", start + off),
                ));
            }
        }
        if let Some(c) = candidate {
            if c.index < start || c.index >= end {
                return Err(ChunkError::unprocessable(
                    "bad_candidate",
                    "the VRF candidate is outside the batch",
                ));
            }
            let at = usize::try_from((c.index - start) * 16)
                .map_err(|_| ChunkError::bad("bad_request", "offset"))?;
            if labels[at..at + 16] != c.label32[..16] {
                return Err(ChunkError::unprocessable(
                    "bad_candidate",
                    "the VRF candidate's label is not the batch's label at its index",
                ));
            }
            // Recomputed here before anything is written: a refused batch changes nothing.
            let threshold = post::difficulty::vrf_difficulty(md.num_labels())
                .map_err(|e| ChunkError::unprocessable("invalid", e.to_string()))?;
            let l = post::scrypt::label32(&commitment, c.index, n);
            if l != c.label32 || l >= threshold {
                return Err(ChunkError::unprocessable(
                    "bad_candidate",
                    format!("label {} is not a VRF-nonce candidate with that value", c.index),
                ));
            }
        }
        let disk = self.disk(&auth.disk_id)?;
        let dir = identity_dir(disk, &id.node_id);
        let first = self.prepare(auth, disk, &dir)?;
        let path = dir.join(file_name(u64::from(auth.file_index)));
        let io = |step: &'static str, source: std::io::Error| {
            if is_storage_full(&source) {
                disk_full(
                    format!(
                        "disk {} ({}) is full: {step} {}: {source}",
                        disk.id,
                        disk.mount,
                        path.display()
                    ),
                    crate::exec::init::free_bytes(&dir),
                )
            } else {
                ChunkError::from(ExecError::Io {
                    step,
                    path: path.clone(),
                    source,
                })
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        file.write_all_at(labels, (start - file_labels.start) * 16)
            .map_err(|e| io("writing", e))?;
        file.sync_data().map_err(|e| io("syncing", e))?;
        if let Some(c) = candidate {
            // merge_nonce recomputes the candidate's label on this CPU and checks the threshold.
            let _g = stripe::metadata_lock();
            post::initialize::merge_nonce(&dir, c, n)
                .map_err(|e| ChunkError::unprocessable("bad_candidate", e.to_string()))?;
        }
        // Before the ack: once the compute worker reports the range, the home is up to date.
        if first || candidate.is_some() || end == auth.range.end || end == file_labels.end {
            self.sync_home(auth);
        }
        Ok(ChunkAck {
            start_label: start,
            end_label: end,
        })
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn chunk(
    State(srv): State<Arc<StreamServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChunkAck>, ChunkError> {
    let token = header(&headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ChunkError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a stream token is needed",
            )
        })?
        .to_owned();
    let start: u64 = header(&headers, HEADER_START)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ChunkError::bad("bad_request", format!("{HEADER_START} must be a label index")))?;
    let mut sum = [0u8; 32];
    header(&headers, HEADER_BLAKE3)
        .and_then(|v| hex::decode_to_slice(v, &mut sum).ok())
        .ok_or_else(|| ChunkError::bad("bad_request", format!("{HEADER_BLAKE3} must be 64 hex digits")))?;
    let candidate = match header(&headers, HEADER_VRF) {
        None => None,
        Some(v) => Some(decode_candidate(v).ok_or_else(|| {
            ChunkError::bad("bad_request", format!("{HEADER_VRF} must be <index>:<64 hex>"))
        })?),
    };
    let auth = srv.authorize(&token).await?;
    // The checksum after the grant: a stranger learns nothing about the data from the answers.
    if blake3::hash(&body) != blake3::Hash::from(sum) {
        return Err(ChunkError::bad(
            "checksum_mismatch",
            "the body does not match its BLAKE3; send it again",
        ));
    }
    let srv2 = srv.clone();
    let ack = tokio::task::spawn_blocking(move || srv2.write_chunk(&auth, start, &body, candidate))
        .await
        .map_err(|e| ChunkError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()))??;
    Ok(Json(ack))
}

/// Serves `srv` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    srv: Arc<StreamServer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, srv.router())
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use post::backend::{CpuBackend, LabelBackend, LabelRequest};
    use protocol::{IdentityParams, LabelRange};

    const N: u32 = 16;

    fn disk(id: &str, mount: &Path) -> DiskInfo {
        DiskInfo {
            id: id.into(),
            mount: mount.display().to_string(),
            physical_device: "sda".into(),
            filesystem: "ext4".into(),
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            read_mb_s: 100.0,
            write_mb_s: 100.0,
        }
    }

    /// 2 files of 1024 labels.
    fn identity() -> IdentityParams {
        IdentityParams {
            identity_id: Uuid::nil(),
            node_id: "31".repeat(32),
            commitment_atx_id: Some("42".repeat(32)),
            num_units: 2,
            labels_per_unit: 1024,
            max_file_size: 16 * 1024,
            scrypt_n: N,
        }
    }

    fn server(disks: Vec<DiskInfo>) -> StreamServer {
        let client = Client::new("http://127.0.0.1:9", Some("unused".into())).expect("client");
        StreamServer::new(Authorizer::Client(client), disks)
    }

    fn grant(file_index: u32, disk_id: &str) -> StreamAuthorization {
        let start = u64::from(file_index) * 1024;
        StreamAuthorization {
            job_id: Uuid::new_v4(),
            fencing_token: 1,
            compute_worker_id: Uuid::nil(),
            identity: identity(),
            file_index,
            range: LabelRange {
                start,
                end: start + 1024,
            },
            disk_id: disk_id.into(),
            valid_for_ms: 60_000,
        }
    }

    /// The labels of file `k` and its best VRF candidate.
    fn labels(k: u64) -> (Vec<u8>, Option<VrfCandidate>) {
        let md = metadata_for(&identity()).expect("metadata");
        let commitment = md.commitment();
        let threshold = post::difficulty::vrf_difficulty(md.num_labels()).expect("threshold");
        let mut out = vec![0u8; 1024 * 16];
        let cands = CpuBackend::new(1)
            .expect("cpu")
            .compute(
                &LabelRequest {
                    commitment: &commitment,
                    scrypt_n: N as usize,
                    start: k * 1024,
                    vrf_threshold: Some(&threshold),
                },
                &mut out,
            )
            .expect("labels");
        (out, post::backend::best_candidate(&cands))
    }

    /// Files streamed to two disks of this rig: the directory with file 0 is the home, with a
    /// link to the file on the other disk and the nonce of both; a stale copy of a file on the
    /// other disk is removed when the file's grant starts.
    #[test]
    fn streamed_files_of_a_striped_identity_have_one_home() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let disks = vec![
            disk("da", &tmp.path().join("a")),
            disk("db", &tmp.path().join("b")),
        ];
        let srv = server(disks.clone());
        let node = identity().node_id;
        let (a, b) = (identity_dir(&disks[0], &node), identity_dir(&disks[1], &node));
        // A stale copy of file 0 on disk b (the file was moved to disk a).
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(b.join(file_name(0)), b"stale").expect("stale copy");
        let (l1, c1) = labels(1);
        let (l0, c0) = labels(0);
        srv.write_chunk(&grant(1, "db"), 1024, &l1, c1).expect("file 1");
        srv.write_chunk(&grant(0, "da"), 0, &l0, c0).expect("file 0");
        assert!(!b.join(file_name(0)).exists(), "the stale copy is gone");
        let link = std::fs::symlink_metadata(a.join(file_name(1))).expect("link in home");
        assert!(link.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(a.join(file_name(1))).expect("link"),
            b.join(file_name(1))
        );
        assert!(std::fs::symlink_metadata(b.join(file_name(1)))
            .expect("real file")
            .file_type()
            .is_file());

        // The home reads as one directory `post init` would have written.
        let single = tmp.path().join("single");
        let md = metadata_for(&identity()).expect("metadata");
        let mut o = post::initialize::InitOptions::new(md.node_id, md.commitment_atx_id, 2, 1024, 16 * 1024);
        o.scrypt_n = N as usize;
        let cpu = CpuBackend::new(1).expect("cpu");
        post::initialize::initialize(
            &single,
            &o,
            &cpu,
            &|_| {},
            &std::sync::atomic::AtomicBool::new(false),
        )
        .expect("reference");
        let home = post::metadata::PostMetadata::load(&a)
            .expect("md")
            .expect("home md");
        let reference = post::metadata::PostMetadata::load(&single)
            .expect("md")
            .expect("reference md");
        assert_eq!(
            (home.nonce, home.nonce_value),
            (reference.nonce, reference.nonce_value)
        );
        for k in 0..2 {
            assert_eq!(
                std::fs::read(a.join(file_name(k))).expect("ours"),
                std::fs::read(single.join(file_name(k))).expect("reference"),
                "file {k}"
            );
        }
    }

    /// `ENOSPC` while writing (here `/dev/full` behind the file's name) is 507 `disk_full`,
    /// naming the disk.
    #[test]
    fn enospc_is_disk_full() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let disks = vec![disk("da", &tmp.path().join("a"))];
        let srv = server(disks.clone());
        let dir = identity_dir(&disks[0], &identity().node_id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::symlink("/dev/full", dir.join(file_name(0))).expect("link");
        let (l0, _) = labels(0);
        let e = srv
            .write_chunk(&grant(0, "da"), 0, &l0, None)
            .expect_err("ENOSPC");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            "{e}"
        );
        assert!(e.message.contains("disk da"), "{e}");
    }
}
