//! The compute worker's side: compute an init job's labels and send each batch to the storage
//! worker named by the lease's stream grant. One batch is in flight while the next is computed;
//! a batch counts (is reported) only once the storage worker acked it, which it does after the
//! batch is fsynced there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use post::backend::{LabelBackend, LabelRequest, VrfCandidate};
use protocol::{IdentityParams, RangeDone, StreamGrant};

use super::{
    encode_candidate, ChunkAck, CHUNK_PATH, HEADER_BLAKE3, HEADER_START, HEADER_VRF, MAX_CHUNK_BYTES,
};
use crate::exec::init::{metadata_for, InitOutcome, RangeEnd};
use crate::exec::{checked_range, ExecError};

/// One streamed init job.
#[derive(Debug, Clone)]
pub struct StreamedInit {
    pub identity: IdentityParams,
    pub file_index: u64,
    /// Identity-wide label indices.
    pub start: u64,
    pub end: u64,
    /// Labels before `start + resume_from` are already reported done.
    pub resume_from: u64,
    /// The target disk's id on the storage worker (named when that disk is full).
    pub disk_id: String,
    /// `end`, lowered when the coordinator cuts the job short.
    pub cut: RangeEnd,
}

/// Why a batch could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The storage worker refused the batch for good (bad token, range, labels).
    #[error("the storage worker at {url} refused the batch: {status} {code}: {message}")]
    Refused {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The lease behind the token no longer holds.
    #[error("the storage worker at {url} says the lease is gone: {message}")]
    StaleLease { url: String, message: String },
    /// The target disk on the storage worker is full (507 `disk_full`): not retried, the job fails
    /// for good and the coordinator moves the file to another disk.
    #[error("the storage worker at {url} has no room on the target disk: {message}")]
    DiskFull {
        url: String,
        message: String,
        /// Free bytes the storage worker measured on the disk, when it could.
        free_bytes: Option<u64>,
    },
    /// Still failing after every retry (network, storage worker busy or down).
    #[error("sending labels to {url} failed {attempts} times; last: {last}")]
    Unreachable {
        url: String,
        attempts: u32,
        last: String,
    },
}

impl From<StreamError> for ExecError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::StaleLease { .. } => ExecError::Stopped,
            StreamError::Refused { .. } | StreamError::DiskFull { .. } => ExecError::Invalid(e.to_string()),
            StreamError::Unreachable { ref url, .. } => ExecError::Io {
                step: "streaming labels to",
                path: url.into(),
                source: std::io::Error::other(e.to_string()),
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    free_bytes: Option<u64>,
}

/// Sends batches under one grant, with retries.
#[derive(Clone)]
pub struct ChunkSender {
    http: reqwest::Client,
    url: String,
    token: String,
    /// Attempts per batch before giving up (transport errors, 5xx, checksum mismatches).
    pub attempts: u32,
    /// The first pause between attempts; doubled after each.
    pub backoff: Duration,
}

impl std::fmt::Debug for ChunkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSender")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ChunkSender {
    pub fn new(grant: &StreamGrant) -> Result<Self, StreamError> {
        let url = format!("{}{CHUNK_PATH}", grant.url.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StreamError::Unreachable {
                url: url.clone(),
                attempts: 0,
                last: e.to_string(),
            })?;
        Ok(ChunkSender {
            http,
            url,
            token: grant.token.clone(),
            attempts: 6,
            backoff: Duration::from_millis(500),
        })
    }

    /// Sends one batch (as is: the checksum is of exactly these bytes) and waits for its ack.
    pub async fn send(
        &self,
        start: u64,
        labels: bytes_t::Bytes,
        best: Option<VrfCandidate>,
    ) -> Result<ChunkAck, StreamError> {
        let sum = blake3::hash(&labels).to_hex().to_string();
        self.send_with_checksum(start, labels, &sum, best).await
    }

    /// [`Self::send`] with a given checksum (tests send wrong ones).
    pub async fn send_with_checksum(
        &self,
        start: u64,
        labels: bytes_t::Bytes,
        checksum: &str,
        best: Option<VrfCandidate>,
    ) -> Result<ChunkAck, StreamError> {
        let mut pause = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            let mut req = self
                .http
                .post(&self.url)
                .bearer_auth(&self.token)
                .header(HEADER_START, start.to_string())
                .header(HEADER_BLAKE3, checksum)
                .header("content-type", "application/octet-stream")
                .body(labels.clone());
            if let Some(c) = &best {
                req = req.header(HEADER_VRF, encode_candidate(c));
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return resp.json::<ChunkAck>().await.map_err(|e| StreamError::Refused {
                        url: self.url.clone(),
                        status: 200,
                        code: "unreadable_ack".into(),
                        message: e.to_string(),
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (code, message, free_bytes) = match resp.json::<ErrorBody>().await {
                        Ok(b) => (b.error.code, b.error.message, b.error.free_bytes),
                        Err(_) => ("unknown".to_owned(), format!("HTTP {status}"), None),
                    };
                    if code == "disk_full" {
                        return Err(StreamError::DiskFull {
                            url: self.url.clone(),
                            message,
                            free_bytes,
                        });
                    }
                    let again = status >= 500 || status == 429 || code == "checksum_mismatch";
                    if status == 409 {
                        return Err(StreamError::StaleLease {
                            url: self.url.clone(),
                            message,
                        });
                    }
                    if !again {
                        return Err(StreamError::Refused {
                            url: self.url.clone(),
                            status,
                            code,
                            message,
                        });
                    }
                    last = format!("{status} {code}: {message}");
                }
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                tracing::warn!(url = %self.url, attempt, error = %last, "sending labels failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
        Err(StreamError::Unreachable {
            url: self.url.clone(),
            attempts: self.attempts,
            last,
        })
    }
}

// `reqwest` bodies take `bytes::Bytes`, which axum re-exports.
use axum::body as bytes_t;

/// Computes the job's labels and streams them, one batch in flight while the next is computed.
/// `report` is called for every acked batch, in order. Runs on a blocking thread; `rt` is the
/// runtime the requests run on.
pub fn run_streamed_init(
    task: &StreamedInit,
    backend: &dyn LabelBackend,
    sender: &ChunkSender,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
    report: &mut dyn FnMut(RangeDone, Option<VrfCandidate>),
) -> Result<InitOutcome, ExecError> {
    let id = &task.identity;
    let (n, _) = checked_range(id, task.file_index, task.start, task.end)?;
    let md = metadata_for(id)?;
    let commitment = md.commitment();
    let threshold =
        post::difficulty::vrf_difficulty(md.num_labels()).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let mut out = InitOutcome::default();
    let mut next = task.start.saturating_add(task.resume_from).min(task.end);
    let mut batch = backend.preferred_batch().max(64) as u64;
    let max_batch = (MAX_CHUNK_BYTES / 16) as u64;
    type InFlight = (
        RangeDone,
        Option<VrfCandidate>,
        tokio::task::JoinHandle<Result<ChunkAck, StreamError>>,
    );
    let mut in_flight: Option<InFlight> = None;
    let mut settle = |f: InFlight, out: &mut InitOutcome| -> Result<(), ExecError> {
        let (range, best, handle) = f;
        let ack = rt
            .block_on(handle)
            .map_err(|_| ExecError::Panicked)?
            .map_err(|e| failure(task, range.start_label, e))?;
        if ack.start_label != range.start_label || ack.end_label != range.end_label {
            return Err(ExecError::Invalid(format!(
                "the storage worker acked [{}, {}) for [{}, {})",
                ack.start_label, ack.end_label, range.start_label, range.end_label
            )));
        }
        if let Some(b) = best {
            out.best = Some(out.best.map_or(b, |o| o.better(b)));
        }
        out.labels_written += range.end_label - range.start_label;
        report(range, best);
        Ok(())
    };
    loop {
        let end = task.cut.get(task.end);
        if next >= end {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            if let Some(f) = in_flight.take() {
                settle(f, &mut out)?;
            }
            return Err(ExecError::Stopped);
        }
        let count = batch.min(end - next);
        let len = usize::try_from(count * 16).map_err(|_| ExecError::Invalid("batch".into()))?;
        let mut buf = vec![0u8; len];
        let t = Instant::now();
        let req = LabelRequest {
            commitment: &commitment,
            scrypt_n: n,
            start: next,
            vrf_threshold: Some(&threshold),
        };
        let cands = backend.compute(&req, &mut buf)?;
        let best = post::backend::best_candidate(&cands);
        // The previous batch must be acked before this one is sent: ranges are reported in order.
        if let Some(f) = in_flight.take() {
            settle(f, &mut out)?;
        }
        let range = RangeDone {
            file_index: task.file_index,
            start_label: next,
            end_label: next + count,
        };
        let s = sender.clone();
        let handle = rt.spawn(async move { s.send(range.start_label, buf.into(), best).await });
        in_flight = Some((range, best, handle));
        next += count;
        let took = t.elapsed();
        if took < Duration::from_millis(1000) {
            batch = (batch * 2).min(max_batch).min(1 << 20);
        } else if took > Duration::from_millis(4000) && batch > 64 {
            batch /= 2;
        }
    }
    if let Some(f) = in_flight.take() {
        settle(f, &mut out)?;
    }
    Ok(out)
}

/// A batch that could not be delivered, as the job's error. A full target disk is
/// [`ExecError::DiskFull`] naming that disk, so that the coordinator moves the file elsewhere.
fn failure(task: &StreamedInit, from: u64, e: StreamError) -> ExecError {
    match e {
        StreamError::DiskFull {
            url,
            message,
            free_bytes,
        } => ExecError::DiskFull {
            disk_id: task.disk_id.clone(),
            disk: url.into(),
            free_bytes: free_bytes.unwrap_or(0),
            needed_bytes: task.end.saturating_sub(from).saturating_mul(16),
            detail: format!("the streamed labels [{from}, {}): {message}", task.end),
        },
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use axum::http::StatusCode;
    use axum::Json;
    use post::backend::CpuBackend;
    use protocol::IdentityParams;
    use uuid::Uuid;

    use super::*;

    /// A storage worker that answers every batch 507 `disk_full`; counts the batches it saw.
    async fn full_storage_worker() -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            CHUNK_PATH,
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (
                        StatusCode::INSUFFICIENT_STORAGE,
                        Json(serde_json::json!({"error": {"code": "disk_full",
                            "message": "disk d7 (/mnt/d7) is full: writing postdata_0.bin",
                            "free_bytes": 4096}})),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// A full target disk is final: one request, no retries, and the job's error is
    /// `ExecError::DiskFull` naming the target disk, which the coordinator acts on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_target_disk_is_not_retried_and_names_the_disk() {
        let (url, seen) = full_storage_worker().await;
        let sender = ChunkSender::new(&StreamGrant {
            url,
            token: "t".into(),
        })
        .expect("sender");
        let task = StreamedInit {
            identity: IdentityParams {
                identity_id: Uuid::nil(),
                node_id: "31".repeat(32),
                commitment_atx_id: Some("42".repeat(32)),
                num_units: 1,
                labels_per_unit: 1024,
                max_file_size: 16 * 1024,
                scrypt_n: 2,
            },
            file_index: 0,
            start: 0,
            end: 1024,
            resume_from: 0,
            disk_id: "d7".into(),
            cut: Default::default(),
        };
        let rt = tokio::runtime::Handle::current();
        let mut reported = 0;
        let e = tokio::task::spawn_blocking(move || {
            let backend = CpuBackend::new(1).expect("backend");
            let stop = AtomicBool::new(false);
            let r = run_streamed_init(&task, &backend, &sender, &rt, &stop, &mut |_, _| reported += 1);
            (r.err(), reported)
        })
        .await
        .expect("join");
        let (e, reported) = e;
        let e = e.expect("the job fails");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "not retried");
        assert_eq!(reported, 0, "nothing reported done");
        assert!(!e.is_retryable(), "{e}");
        let full = e.disk_full().expect("a disk-full report");
        assert_eq!(
            (full.disk_id.as_str(), full.free_bytes, full.needed_bytes),
            ("d7", 4096, 1024 * 16),
            "{e}"
        );
        assert!(
            e.to_string().contains("d7") && e.to_string().contains("is full"),
            "{e}"
        );
    }
}
