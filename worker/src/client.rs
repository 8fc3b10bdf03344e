//! The worker's side of the coordinator's HTTP API (`/api/v1/worker/...`), typed: every call
//! returns the body type of `protocol` or a [`ClientError`] that says whether to retry, re-enroll
//! or drop the job.

use std::time::Duration;

use protocol::{
    Capabilities, CompleteRequest, EnrollRequest, EnrollResponse, FailRequest, HeartbeatRequest,
    HeartbeatResponse, LeaseRequest, LeaseResponse, ProgressRequest, ProgressResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered with an error body.
    #[error("{what}: the coordinator answered {status} {code}: {message}")]
    Api {
        what: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection refused, reset, timeout).
    #[error("{what}: cannot reach the coordinator: {source}")]
    Transport {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: unreadable answer: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The lease this report was about is gone: stop the job, keep what is on disk.
    pub fn is_stale_lease(&self) -> bool {
        matches!(self, ClientError::Api { status: 409, code, .. } if code == "stale_lease")
            || matches!(self, ClientError::Api { status: 404, .. })
    }

    /// The credential no longer works (the worker was removed).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Api { status: 401, .. })
    }

    /// Worth trying again later: the network, or the coordinator busy or restarting.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            ClientError::Decode { .. } => false,
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

/// A connection to one coordinator with this worker's credential.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(base: &str, credential: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Transport {
                what: "building the HTTP client",
                source,
            })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    pub fn set_credential(&mut self, credential: String) {
        self.credential = Some(credential);
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(c) = &self.credential {
            req = req.bearer_auth(c);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Transport { what, source })?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json::<R>()
                .await
                .map_err(|source| ClientError::Decode { what, source });
        }
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unknown".to_owned(), status.to_string()),
        };
        Err(ClientError::Api {
            what,
            status: status.as_u16(),
            code,
            message,
        })
    }

    pub async fn enroll(
        &self,
        join_token: &str,
        name: &str,
        capabilities: &Capabilities,
    ) -> Result<EnrollResponse, ClientError> {
        let body = EnrollRequest {
            join_token: join_token.to_owned(),
            name: name.to_owned(),
            capabilities: capabilities.clone(),
        };
        self.post("enroll", "/api/v1/worker/enroll", &body).await
    }

    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        self.post("heartbeat", "/api/v1/worker/heartbeat", req).await
    }

    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, ClientError> {
        self.post("lease", "/api/v1/worker/lease", req).await
    }

    pub async fn progress(&self, job: Uuid, req: &ProgressRequest) -> Result<ProgressResponse, ClientError> {
        self.post("progress", &format!("/api/v1/worker/jobs/{job}/progress"), req)
            .await
    }

    pub async fn complete(&self, job: Uuid, req: &CompleteRequest) -> Result<serde_json::Value, ClientError> {
        self.post("complete", &format!("/api/v1/worker/jobs/{job}/complete"), req)
            .await
    }

    pub async fn fail(&self, job: Uuid, req: &FailRequest) -> Result<serde_json::Value, ClientError> {
        self.post("fail", &format!("/api/v1/worker/jobs/{job}/fail"), req)
            .await
    }

    /// What a stream token a compute worker showed this (storage) worker allows.
    pub async fn stream_authorize(&self, token: &str) -> Result<protocol::StreamAuthorization, ClientError> {
        let req = protocol::StreamAuthorizeRequest {
            token: token.to_owned(),
        };
        self.post("stream authorize", "/api/v1/worker/stream/authorize", &req)
            .await
    }
}
