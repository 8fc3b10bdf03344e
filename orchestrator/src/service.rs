//! The coordinator process: secrets, keystore, store, the HTTP API and the reconcile loop, with one
//! shutdown path (conventions item 6): the shutdown future stops the listener, in-flight requests
//! finish, the reconcile loop ends its round, the store is closed (and its lock released).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use node_bridge::bridge::NodeBridge;
use tokio::sync::{watch, RwLock};

use crate::api::{self, ApiConfig, AppState};
use crate::keystore::{KdfParams, Keystore};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::reconcile::{self, ReconcileConfig, ReconcileInputs};
use crate::secrets::{self, Origin, Secret, SecretSpec};
use crate::smeshing::{Driver, Step};
use crate::store::Store;

/// File names inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const PASSPHRASE_FILE: &str = "keystore.passphrase";
pub const KEYSTORE_DIR: &str = "keystore";

/// Everything `smeshfleet coordinator` needs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// Values of `SMESHFLEET_ADMIN_TOKEN` / `SMESHFLEET_KEYSTORE_PASSPHRASE`.
    pub admin_token_env: Option<String>,
    pub passphrase_env: Option<String>,
    pub kdf: KdfParams,
    pub api: ApiConfig,
    pub reconcile: ReconcileConfig,
    /// The node to smesh against: its state is served under `/api/v1/node` and the smeshing
    /// driver takes every initialized identity through the ATX cycle. `None`: the coordinator
    /// initializes and proves on request only.
    pub node: Option<NodeAttachment>,
}

/// A node for the coordinator, and how often the smeshing driver looks at the identities.
#[derive(Clone)]
pub struct NodeAttachment {
    pub bridge: Arc<dyn NodeBridge>,
    pub every: std::time::Duration,
}

impl std::fmt::Debug for NodeAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAttachment")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// The latest smeshing step of every identity, by identity id.
pub type SmeshingStatus = Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Step>>>;

/// The secrets, resolved: from the environment, a named file, or generated once into the data
/// directory (0600). Prints where a generated one was written; never the secret.
pub fn resolve_secrets(opts: &CoordinatorOptions) -> Result<(Secret, Secret)> {
    let token_spec = SecretSpec {
        what: "admin token",
        env: "SMESHFLEET_ADMIN_TOKEN",
        file: opts.admin_token_file.clone(),
        generate_at: opts.data_dir.join(ADMIN_TOKEN_FILE),
        min_len: 16,
    };
    let (token, origin) = secrets::resolve(&token_spec, opts.admin_token_env.clone())?;
    if let Origin::Generated(path) = &origin {
        println!("admin token generated: {} (mode 0600)", path.display());
    }
    let pass_spec = SecretSpec {
        what: "keystore passphrase",
        env: "SMESHFLEET_KEYSTORE_PASSPHRASE",
        file: opts.passphrase_file.clone(),
        generate_at: opts.data_dir.join(PASSPHRASE_FILE),
        min_len: 12,
    };
    let keystore_exists = opts.data_dir.join(KEYSTORE_DIR).exists();
    if keystore_exists
        && opts.passphrase_env.as_deref().is_none_or(str::is_empty)
        && opts.passphrase_file.is_none()
        && !pass_spec.generate_at.exists()
    {
        anyhow::bail!(
            "the keystore in {} exists but no passphrase was given: set \
             SMESHFLEET_KEYSTORE_PASSPHRASE or --passphrase-file",
            opts.data_dir.join(KEYSTORE_DIR).display()
        );
    }
    let (pass, origin) = secrets::resolve(&pass_spec, opts.passphrase_env.clone())?;
    if let Origin::Generated(path) = &origin {
        println!(
            "keystore passphrase generated: {} (mode 0600). Keys at rest are only as safe as this \
             file: move it off this machine and pass it with --passphrase-file or \
             SMESHFLEET_KEYSTORE_PASSPHRASE.",
            path.display()
        );
    }
    Ok((token, pass))
}

fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    }
    Ok(())
}

/// A started coordinator: where it listens, and how to wait for its end.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The smeshing driver's view, when a node is attached.
    pub smeshing: Option<SmeshingStatus>,
}

/// Runs the coordinator until `shutdown` completes. `on_ready` is called once it listens.
pub async fn run_coordinator(
    opts: CoordinatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Running),
) -> Result<()> {
    prepare_data_dir(&opts.data_dir)?;
    let (admin_token, passphrase) = resolve_secrets(&opts)?;
    let store = match &opts.database_url {
        None => Store::open_in_data_dir(&opts.data_dir).await,
        Some(url) => Store::connect_exclusive(url).await,
    }
    .context("opening the coordinator's database")?;
    let ks_dir = opts.data_dir.join(KEYSTORE_DIR);
    let kdf = opts.kdf;
    let keystore =
        tokio::task::spawn_blocking(move || Keystore::open_or_create(&ks_dir, passphrase.expose(), kdf))
            .await
            .context("opening the keystore")?
            .context("opening the keystore")?;
    let metrics = Arc::new(Metrics::new());
    let keystore = Arc::new(keystore);
    let state = AppState::new(
        store.clone(),
        keystore.clone(),
        metrics.clone(),
        admin_token.expose(),
        opts.api.clone(),
    );
    drop(admin_token);

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr().context("reading the listen address")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let reconciler = tokio::spawn(
        reconcile::Reconciler {
            store: store.clone(),
            metrics,
            cfg: opts.reconcile.clone(),
            inputs: Arc::new(RwLock::new(ReconcileInputs::default())),
            latest: state.plan_handle(),
            wake: state.wake_handle(),
            files: Arc::default(),
            liveness: Some(state.liveness()),
        }
        .run(stop_rx.clone()),
    );
    let flusher = tokio::spawn(flush_heartbeats(store.clone(), state.liveness(), stop_rx.clone()));
    let mut smeshing = None;
    let driver = match &opts.node {
        None => None,
        Some(node) => {
            state.set_node(node.bridge.clone());
            let driver = Driver::new(
                store.clone(),
                keystore.clone(),
                node.bridge.clone(),
                state.wake_handle(),
            );
            smeshing = Some(driver.status_handle());
            Some(tokio::spawn(driver.run(node.every, stop_rx)))
        }
    };
    drop(keystore);

    on_ready(&Running {
        addr,
        state: state.clone(),
        smeshing,
    });
    let app = api::router(state.clone());
    let mut http_stop = stop_tx.subscribe();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                _ = http_stop.changed() => {}
            }
        })
        .await;
    let _ = stop_tx.send(true);
    match reconciler.await {
        Ok(()) => {}
        Err(e) => tracing::error!(error = %e, "the reconcile loop ended abnormally"),
    }
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "the heartbeat writer ended abnormally");
    }
    if let Some(driver) = driver {
        if let Err(e) = driver.await {
            tracing::error!(error = %e, "the smeshing driver ended abnormally");
        }
    }
    drop(state);
    store.close().await;
    served.context("serving HTTP")
}

/// How often heartbeats held in memory are written to the store.
const HEARTBEAT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the heartbeats held in memory every [`HEARTBEAT_FLUSH`] until shutdown, then once more.
async fn flush_heartbeats(store: Store, liveness: Arc<Liveness>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        if let Err(e) = liveness.flush(&store).await {
            tracing::warn!(error = %e, "writing heartbeats failed; kept for the next try");
        }
    }
    if let Err(e) = liveness.flush(&store).await {
        tracing::warn!(error = %e, "writing the last heartbeats failed");
    }
}
