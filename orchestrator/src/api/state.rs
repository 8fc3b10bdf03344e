//! The state every handler shares, and how a bearer token becomes a [`Principal`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, RwLock};

use super::auth::{ct_eq, Principal, Role, TokenResolver};
use super::error::ApiError;
use node_bridge::bridge::NodeBridge;

use crate::keystore::Keystore;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::scheduler::Plan;
use crate::store::{ApiRole, Store};

/// Prefix of the credentials workers get at enrollment (tells the resolver where to look).
pub const WORKER_CREDENTIAL_PREFIX: &str = "sfw_";
/// Prefix of API tokens created through `/api/v1/tokens`.
pub const API_TOKEN_PREFIX: &str = "sfa_";

/// Tunables of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long a job lease lasts without a progress report.
    pub lease_ms: u64,
    /// How often workers should heartbeat; a worker silent for 4x this is offline.
    pub heartbeat_interval_ms: u64,
    /// Default lifetime of a join token.
    pub join_token_ttl_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a resolved token is trusted before the store is asked again. Revocations and
    /// worker removals made through this coordinator take effect at once.
    pub auth_cache_ttl: Duration,
    /// How often the event stream polls the event log for events other processes wrote.
    pub event_poll_interval: Duration,
    /// The network's proof parameters: sent with every k2pow, prove and verify lease, and used to
    /// verify the proofs workers return. Mainnet by default.
    pub proof: post::proof::ProofConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            lease_ms: 120_000,
            heartbeat_interval_ms: 15_000,
            join_token_ttl_ms: 24 * 3_600_000,
            max_body_bytes: 1 << 20,
            auth_cache_ttl: Duration::from_secs(10),
            event_poll_interval: Duration::from_millis(1000),
            proof: post::proof::ProofConfig::MAINNET,
        }
    }
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub store: Store,
    pub keystore: Arc<Keystore>,
    pub metrics: Arc<Metrics>,
    pub config: ApiConfig,
    admin_token_hash: [u8; 32],
    /// Notified when something changed that the reconcile loop should act on now.
    pub wake: Arc<Notify>,
    /// Notified when this process appended an event (the event stream wakes at once).
    pub events: Arc<Notify>,
    /// The reconcile loop's latest plan.
    pub latest_plan: Arc<RwLock<Option<Arc<Plan>>>>,
    /// Heartbeats held in memory and the worker states they answer with.
    pub liveness: Arc<Liveness>,
    auth_cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Light-mode RandomX for checking the k2pow of returned proofs, built on first use.
    pow_verifier: Mutex<Option<Arc<post::pow::RandomXPow>>>,
    /// The node the coordinator smeshes against (the embedded devnet under `smeshfleet up`);
    /// unset for a coordinator that only initializes and proves on request.
    node: OnceLock<Arc<dyn NodeBridge>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.0.store.target())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// `admin_token` is the bootstrap admin credential (kept only as its hash here).
    pub fn new(
        store: Store,
        keystore: Arc<Keystore>,
        metrics: Arc<Metrics>,
        admin_token: &str,
        config: ApiConfig,
    ) -> Self {
        AppState(Arc::new(Inner {
            store,
            keystore,
            metrics,
            config,
            admin_token_hash: *blake3::hash(admin_token.as_bytes()).as_bytes(),
            wake: Arc::new(Notify::new()),
            events: Arc::new(Notify::new()),
            latest_plan: Arc::new(RwLock::new(None)),
            liveness: Arc::new(Liveness::new()),
            auth_cache: Mutex::new(HashMap::new()),
            pow_verifier: Mutex::new(None),
            node: OnceLock::new(),
        }))
    }

    /// Attaches the node (once; a second call is ignored and returns false).
    pub fn set_node(&self, node: Arc<dyn NodeBridge>) -> bool {
        self.0.node.set(node).is_ok()
    }

    /// The node, when one is attached.
    pub fn node(&self) -> Option<&Arc<dyn NodeBridge>> {
        self.0.node.get()
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// What the reconcile loop waits on between rounds.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.0.wake.clone()
    }

    /// Heartbeats held in memory; the coordinator writes them every second and the reconcile loop
    /// before each pass.
    pub fn liveness(&self) -> Arc<Liveness> {
        self.0.liveness.clone()
    }

    /// Where the reconcile loop publishes its plans.
    pub fn plan_handle(&self) -> Arc<RwLock<Option<Arc<Plan>>>> {
        self.0.latest_plan.clone()
    }

    /// The light-mode RandomX the coordinator checks k2pows with (blocking: built on first use,
    /// about 256 MiB and a second).
    pub(crate) fn pow_verifier(&self) -> Result<Arc<post::pow::RandomXPow>, post::pow::PowError> {
        let mut slot = self.0.pow_verifier.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = slot.as_ref() {
            return Ok(rx.clone());
        }
        let rx = Arc::new(post::pow::RandomXPow::new(post::pow::RandomXMode::Light)?);
        *slot = Some(rx.clone());
        Ok(rx)
    }

    /// Forget every cached token resolution (after a revocation or a worker's removal).
    pub(crate) fn clear_auth_cache(&self) {
        if let Ok(mut c) = self.0.auth_cache.lock() {
            c.clear();
        }
    }

    /// Appends an event and wakes the event streams. A failure is logged, not returned: the change
    /// it describes is already committed.
    pub(crate) async fn event(&self, kind: &str, subject: &str, data: serde_json::Value) {
        match self.0.store.append_event(kind, subject, &data, now_ms()).await {
            Ok(_) => self.0.events.notify_waiters(),
            Err(e) => tracing::warn!(error = %e, kind, subject, "could not append an event"),
        }
    }

    async fn resolve_uncached(&self, hash: &[u8; 32]) -> Result<Option<Principal>, ApiError> {
        if ct_eq(hash, &self.0.admin_token_hash) {
            return Ok(Some(Principal::User {
                name: "admin".into(),
                role: Role::Admin,
            }));
        }
        if let Some(t) = self.0.store.find_api_token_by_hash(hash).await? {
            if t.revoked_at.is_none() {
                let role = match t.role {
                    ApiRole::Viewer => Role::Viewer,
                    ApiRole::Operator => Role::Operator,
                    ApiRole::Admin => Role::Admin,
                };
                return Ok(Some(Principal::User { name: t.name, role }));
            }
            return Ok(None);
        }
        Ok(None)
    }
}

impl TokenResolver for AppState {
    async fn resolve(&self, token: &str) -> Result<Option<Principal>, ApiError> {
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let ttl = self.0.config.auth_cache_ttl;
        if let Ok(cache) = self.0.auth_cache.lock() {
            if let Some((p, at)) = cache.get(&hash) {
                if at.elapsed() < ttl {
                    return Ok(Some(p.clone()));
                }
            }
        }
        let found = if token.starts_with(WORKER_CREDENTIAL_PREFIX) {
            self.0
                .store
                .find_worker_by_credential_hash(&hash)
                .await?
                .map(|w| Principal::Worker {
                    worker_id: w.id.to_string(),
                })
        } else {
            self.resolve_uncached(&hash).await?
        };
        if let Some(p) = &found {
            if let Ok(mut cache) = self.0.auth_cache.lock() {
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(hash, (p.clone(), Instant::now()));
            }
        }
        Ok(found)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
