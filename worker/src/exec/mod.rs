//! Job executors. Each runs on a blocking thread, off the async runtime, checks its stop flag
//! between batches, and reports every durable step through a callback, so that the lease loop can
//! tell the coordinator exactly what is on disk.

pub mod init;

/// Why an executor stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Asked to stop (drain, shutdown, or the lease is gone). What was reported stays done.
    #[error("stopped before the end of the job")]
    Stopped,
    /// The job cannot be done as specified (no commitment ATX yet, a range outside the layout).
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("computing labels: {0}")]
    Backend(#[from] post::backend::BackendError),
    #[error("PoST metadata: {0}")]
    Metadata(String),
}

impl ExecError {
    /// Whether another attempt may succeed (I/O errors and device faults may; bad input not).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ExecError::Invalid(_))
    }
}
