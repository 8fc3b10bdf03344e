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
use crate::exec::init::{metadata_for, InitOutcome};
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
            StreamError::Refused { .. } => ExecError::Invalid(e.to_string()),
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
                    let (code, message) = match resp.json::<ErrorBody>().await {
                        Ok(b) => (b.error.code, b.error.message),
                        Err(_) => ("unknown".to_owned(), format!("HTTP {status}")),
                    };
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
        let ack = rt.block_on(handle).map_err(|_| ExecError::Panicked)??;
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
    while next < task.end {
        if stop.load(Ordering::Relaxed) {
            if let Some(f) = in_flight.take() {
                settle(f, &mut out)?;
            }
            return Err(ExecError::Stopped);
        }
        let count = batch.min(task.end - next);
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
