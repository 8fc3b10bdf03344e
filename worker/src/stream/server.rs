//! The storage worker's side: the chunk route. See the module above for the protocol.

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
use crate::exec::init::{ensure_metadata, metadata_for};
use crate::exec::{identity_dir, ExecError};

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
    /// Nonce merges of one directory must not interleave (load, compare, save).
    nonce_lock: Mutex<()>,
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
}

impl ChunkError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ChunkError {
            status,
            code,
            message: message.into(),
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
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<ExecError> for ChunkError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Invalid(m) => ChunkError::unprocessable("invalid", m),
            e => ChunkError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
        }
    }
}

impl StreamServer {
    pub fn new(authorizer: Authorizer, disks: Vec<DiskInfo>) -> Self {
        StreamServer {
            authorizer,
            client: tokio::sync::OnceCell::new(),
            disks,
            cache: Mutex::default(),
            nonce_lock: Mutex::new(()),
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

    /// The first batch of a grant: the identity's metadata is ensured, as the local executor does.
    fn prepare(&self, auth: &StreamAuthorization, dir: &Path) -> Result<(), ChunkError> {
        let key = (auth.job_id, auth.fencing_token);
        if self.prepared.lock().map(|p| p.contains(&key)).unwrap_or(false) {
            return Ok(());
        }
        let md = metadata_for(&auth.identity)?;
        ensure_metadata(dir, &md)?;
        if let Ok(mut p) = self.prepared.lock() {
            p.insert(key);
        }
        Ok(())
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
        self.prepare(auth, &dir)?;
        let path = dir.join(file_name(u64::from(auth.file_index)));
        let io = |step: &'static str, source: std::io::Error| ExecError::Io {
            step,
            path: path.clone(),
            source,
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
            let _g = self
                .nonce_lock
                .lock()
                .map_err(|_| ChunkError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", "lock"))?;
            post::initialize::merge_nonce(&dir, c, n)
                .map_err(|e| ChunkError::unprocessable("bad_candidate", e.to_string()))?;
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
