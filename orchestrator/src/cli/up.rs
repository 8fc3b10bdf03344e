//! `smeshfleet up`: the whole smeshing loop on one machine. An embedded devnet node
//! (node-bridge's [`Devnet`]: PoETs, ATX validation, eligibility, rewards, accounts), the
//! coordinator with its smeshing driver, and a local worker, in one process: identities are
//! created, initialized, registered with the PoETs, proved, published, and earn rewards.
//!
//! Everything lives in the data directory: the coordinator's database and keystore, the worker's
//! enrollment and PoST data, the devnet's genesis (`devnet.json`) and the devnet wallet that is
//! every identity's coinbase (`devnet-wallet.key`, 0600), and the devnet's chain (`devnet/`: a
//! snapshot saved every few seconds and at the end, and a journal of every input since, see
//! node-bridge's `devnet::persist`). A second `up` on the same directory continues: the same
//! genesis, chain (ATXs, PoET rounds, balances, rewards), identities, keys, data and proofs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use node_bridge::bridge::NodeBridge;
use node_bridge::devnet::{Devnet, DevnetConfig};
use node_bridge::vm::{wallet_address, Address};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::CliError;
use crate::api::{ApiConfig, AppState};
use crate::keystore::KdfParams;
use crate::reconcile::ReconcileConfig;
use crate::service::{self, CoordinatorOptions, NodeAttachment, SmeshingStatus};
use crate::store::{IdentityState, JobKind, JobState, NewIdentity};

/// The bech32 prefix of the devnet's addresses.
pub const DEVNET_HRP: &str = node_bridge::vm::address::HRP_STANDALONE;
/// The devnet's genesis, kept so that a second `up` continues on the same network.
pub const DEVNET_FILE: &str = "devnet.json";
/// The devnet's chain: its snapshot and journal.
pub const DEVNET_DIR: &str = "devnet";
/// Ticks (250 ms) between two snapshots of the devnet's chain.
const SAVE_EVERY_TICKS: u32 = 20;
/// The devnet wallet's secret key (hex), every `up` identity's coinbase.
pub const WALLET_KEY_FILE: &str = "devnet-wallet.key";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for everything: database, keystore, worker, PoST data, devnet genesis, wallet.
    #[arg(long, env = "SMESHFLEET_DATA_DIR", default_value = "smeshfleet-devnet")]
    pub data_dir: PathBuf,
    /// How many identities to smesh with.
    #[arg(long, default_value_t = 2)]
    pub identities: u32,
    /// Space units per identity (the devnet's unit is 1,024 labels).
    #[arg(long, default_value_t = 1)]
    pub units: u32,
    /// Address to serve the API (and, once it exists, the dashboard) on.
    #[arg(long, env = "SMESHFLEET_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// GPUs the local worker may use: all, none, or indices like 0,2.
    #[arg(long, default_value = "all")]
    pub gpus: String,
    /// Most CPU threads the local worker uses (default: all).
    #[arg(long)]
    pub cpu_threads: Option<u32>,
    /// Stop once every identity has this many ATXs accepted (default: run until Ctrl-C).
    #[arg(long)]
    pub until_atxs: Option<usize>,
}

/// What `devnet.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DevnetFile {
    genesis_ms: u64,
}

pub fn run(args: UpArgs) -> Result<ExitCode, CliError> {
    let input = |e: anyhow::Error| CliError::input(false, e);
    if args.identities == 0 || args.identities > 100 {
        return Err(input(anyhow::anyhow!("--identities must be 1 to 100")));
    }
    if args.units == 0 || args.units > 16 {
        return Err(input(anyhow::anyhow!(
            "--units must be 1 to 16 (the devnet's limits)"
        )));
    }
    let gpus: worker::discovery::GpuSelection = args
        .gpus
        .parse()
        .map_err(|e| input(anyhow::anyhow!("--gpus: {e}")))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))
        .map_err(input)?;
    let genesis_ms = devnet_genesis(&args.data_dir).map_err(input)?;
    let wallet = wallet_key(&args.data_dir).map_err(input)?;
    let coinbase = wallet_address(&wallet.verifying_key().to_bytes());
    // Nobody holds the faucet's key: what the wallet spends it earned.
    let faucet = wallet_address(blake3::hash(b"smeshfleet devnet faucet").as_bytes());
    let config = DevnetConfig::devnet(genesis_ms, faucet);

    let rt = super::coordinator::runtime()?;
    rt.block_on(up(args, config, coinbase, gpus))
        .map_err(|e| CliError::runtime(false, e))?;
    Ok(ExitCode::SUCCESS)
}

async fn up(
    args: UpArgs,
    config: DevnetConfig,
    coinbase: Address,
    gpus: worker::discovery::GpuSelection,
) -> anyhow::Result<()> {
    let atx = config.atx;
    let golden_atx = config.golden_atx;
    println!(
        "starting the embedded devnet (genesis {}, {} ms layers, {} layers per epoch)",
        config.clock.genesis_ms, config.clock.layer_duration_ms, config.clock.layers_per_epoch
    );
    let chain_dir = args.data_dir.join(DEVNET_DIR);
    let devnet = tokio::task::spawn_blocking(move || Devnet::open(config, &chain_dir))
        .await
        .context("starting the devnet")?
        .with_context(|| {
            format!(
                "opening the devnet's chain in {}",
                args.data_dir.join(DEVNET_DIR).display()
            )
        })?;
    let devnet = Arc::new(devnet);
    devnet.advance(now_ms()).context("advancing the devnet to now")?;

    let proof = post::proof::ProofConfig {
        k1: atx.k1,
        k2: atx.k2,
        pow_difficulty: atx.pow_difficulty,
    };
    let api = ApiConfig {
        lease_ms: 30_000,
        proof,
        ..ApiConfig::default()
    };
    let mut reconcile = ReconcileConfig {
        interval: Duration::from_secs(1),
        offline_after_ms: i64::try_from(api.heartbeat_interval_ms.saturating_mul(4)).unwrap_or(i64::MAX),
        ..ReconcileConfig::default()
    };
    reconcile.scheduler.k2pow_hashes_per_unit_group =
        crate::api::proving::k2pow_hashes_per_unit_group(&proof);
    let opts = CoordinatorOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        database_url: None,
        admin_token_file: None,
        passphrase_file: None,
        admin_token_env: std::env::var("SMESHFLEET_ADMIN_TOKEN").ok(),
        passphrase_env: std::env::var("SMESHFLEET_KEYSTORE_PASSPHRASE").ok(),
        kdf: KdfParams::production(),
        api,
        reconcile,
        node: Some(NodeAttachment {
            bridge: devnet.clone(),
            every: Duration::from_millis(500),
        }),
    };

    // One stop signal for everything: Ctrl-C, SIGTERM, or `--until-atxs` reached.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            super::coordinator::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
    }
    let ticker = tokio::spawn(tick_devnet(devnet.clone(), stop_rx.clone()));

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let coordinator_stop = wait_for_stop(stop_rx.clone());
    let coordinator = tokio::spawn(service::run_coordinator(opts, coordinator_stop, move |r| {
        let _ = ready_tx.send((r.addr, r.state.clone(), r.smeshing.clone()));
    }));
    let (addr, state, smeshing) = match ready_rx.await {
        Ok(r) => r,
        Err(_) => {
            let _ = stop_tx.send(true);
            return match coordinator.await {
                Ok(Ok(())) => bail!("the coordinator stopped before it was ready"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e.into()),
            };
        }
    };
    let token_from = if std::env::var_os("SMESHFLEET_ADMIN_TOKEN").is_some() {
        "$SMESHFLEET_ADMIN_TOKEN".to_owned()
    } else {
        args.data_dir
            .join(service::ADMIN_TOKEN_FILE)
            .display()
            .to_string()
    };
    println!("smeshfleet is up: API on http://{addr} (admin token: {token_from})");
    let coinbase_text = coinbase
        .encode(DEVNET_HRP)
        .map_err(|e| anyhow::anyhow!("encoding the coinbase: {e}"))?;
    println!(
        "coinbase of every identity: {coinbase_text} (key in {})",
        args.data_dir.join(WALLET_KEY_FILE).display()
    );

    let setup = async {
        let ids = ensure_identities(
            &state,
            args.identities,
            args.units,
            atx,
            golden_atx,
            &coinbase_text,
        )
        .await?;
        let token = join_token(&state).await?;
        anyhow::Ok((ids, token))
    };
    let (ids, token) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = coordinator.await;
            return Err(e);
        }
    };

    // The local worker, over the real API on the loopback interface.
    let worker_dir = args.data_dir.join("worker");
    let disk = args.data_dir.join("post");
    let dopts = worker::discovery::DiscoveryOptions {
        disks: vec![disk],
        gpus,
        cpu_threads: args.cpu_threads,
        cpu_init: true,
        measure: true,
        scrypt_n: u32::try_from(atx.scrypt_n).unwrap_or(u32::MAX),
        measure_seconds: 0.3,
        disk_test_bytes: 8 << 20,
        ..worker::discovery::DiscoveryOptions::default()
    };
    let caps = tokio::task::spawn_blocking(move || worker::discovery::discover(&dopts))
        .await
        .context("discovering this machine's devices")?
        .context("discovering this machine's devices")?;
    // The same coordinator as last time, perhaps on another address.
    worker::agent::readdress_enrollment(&worker_dir, &format!("http://{addr}"))?;
    let worker_opts = worker::agent::AgentOptions {
        coordinator: format!("http://{addr}"),
        join_token: Some(token),
        data_dir: worker_dir,
        name: "local".into(),
        cpu_threads: caps.cpu.threads.max(1) as usize,
        capabilities: caps,
        heartbeat_interval: Duration::from_secs(1),
        lease_poll: Duration::from_millis(300),
        progress_interval: Duration::from_millis(500),
    };
    let exec = worker::exec::ExecConfig {
        proof,
        randomx_mode: post::pow::RandomXMode::Light,
        ..worker::exec::ExecConfig::default()
    };
    let worker = tokio::spawn(worker::agent::run_with(
        worker_opts,
        exec,
        wait_for_stop(stop_rx.clone()),
    ));

    let display = tokio::spawn(show_progress(
        state.clone(),
        devnet.clone(),
        smeshing,
        ids,
        args.until_atxs,
        stop_tx.clone(),
        stop_rx.clone(),
    ));

    let worker_result = worker.await;
    let _ = stop_tx.send(true);
    let coordinator_result = coordinator.await;
    let _ = display.await;
    let _ = ticker.await;
    let d = devnet.clone();
    match tokio::task::spawn_blocking(move || d.save()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the devnet's last snapshot failed; the chain is as of the last one and its journal")
        }
        Err(e) => tracing::warn!(error = %e, "the devnet's last snapshot did not run"),
    }
    match worker_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("the local worker failed")),
        Err(e) => return Err(anyhow::Error::new(e).context("the local worker ended abnormally")),
    }
    match coordinator_result {
        Ok(r) => r.context("the coordinator failed")?,
        Err(e) => return Err(anyhow::Error::new(e).context("the coordinator ended abnormally")),
    }
    println!(
        "smeshfleet stopped; `smeshfleet up --data-dir {}` continues",
        args.data_dir.display()
    );
    Ok(())
}

fn now_ms() -> u64 {
    u64::try_from(crate::reconcile::now_ms()).unwrap_or(0)
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Moves the devnet's time along with the wall clock, and saves its snapshot every
/// [`SAVE_EVERY_TICKS`] ticks (a failed save is logged: the journal still holds the chain).
async fn tick_devnet(devnet: Arc<Devnet>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        ticks = ticks.wrapping_add(1);
        let save = ticks.is_multiple_of(SAVE_EVERY_TICKS);
        let d = devnet.clone();
        let step = move || {
            d.advance(now_ms())?;
            if save {
                if let Err(e) = d.save() {
                    tracing::warn!(
                        error = %e,
                        "the devnet's snapshot failed (tried again in 5 s; until one succeeds, new inputs may not be durable)"
                    );
                }
            }
            Ok::<(), node_bridge::devnet::DevnetError>(())
        };
        match tokio::task::spawn_blocking(step).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the devnet could not advance");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "the devnet's clock task failed");
                return;
            }
        }
    }
}

/// The devnet's genesis: read from the data directory, or now (rounded down to a second) on the
/// first run.
fn devnet_genesis(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join(DEVNET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f: DevnetFile =
                serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
            Ok(f.genesis_ms)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let genesis_ms = now_ms() / 1000 * 1000;
            let text = serde_json::to_vec_pretty(&DevnetFile { genesis_ms })?;
            crate::secrets::write_private_file(&path, &String::from_utf8_lossy(&text))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(genesis_ms)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// The devnet wallet's key: read, or generated on the first run (0600).
fn wallet_key(dir: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let path = dir.join(WALLET_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| anyhow::anyhow!("{} must hold 64 hex digits", path.display()))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            crate::secrets::write_private_file(&path, &hex::encode(seed))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// The identities `devnet-1` .. `devnet-N`: the ones that exist are kept, the others created
/// (a key in the keystore; data sized for the devnet; the golden ATX as commitment ATX).
async fn ensure_identities(
    state: &AppState,
    n: u32,
    units: u32,
    atx: node_bridge::atx::AtxParams,
    golden_atx: [u8; 32],
    coinbase: &str,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::new();
    for k in 1..=n {
        let name = format!("devnet-{k}");
        if let Some(existing) = state.store().find_identity_by_name(&name).await? {
            ids.push(existing.id);
            continue;
        }
        let ks = state.0.keystore.clone();
        let node_id = tokio::task::spawn_blocking(move || ks.generate())
            .await
            .context("generating a key")?
            .context("generating a key")?;
        let new = NewIdentity {
            name: name.clone(),
            node_id: *node_id.as_bytes(),
            num_units: units,
            labels_per_unit: atx.labels_per_unit,
            max_file_size: atx.labels_per_unit * 16,
            scrypt_n: u32::try_from(atx.scrypt_n).unwrap_or(u32::MAX),
            commitment_atx_id: Some(golden_atx),
            coinbase: Some(coinbase.to_owned()),
        };
        let ident = state
            .store()
            .create_identity(&new, crate::reconcile::now_ms())
            .await
            .with_context(|| format!("recording identity {name}"))?;
        println!("identity {name} created: node id {node_id}");
        ids.push(ident.id);
    }
    state.wake_handle().notify_one();
    Ok(ids)
}

/// A join token for the local worker (used only when it is not enrolled yet).
async fn join_token(state: &AppState) -> anyhow::Result<String> {
    let token = format!("sfj_{}", crate::secrets::generate_token().as_str());
    let now = crate::reconcile::now_ms();
    state
        .store()
        .create_join_token(
            &crate::store::NewJoinToken {
                token_hash: *blake3::hash(token.as_bytes()).as_bytes(),
                name: Some("local".into()),
                role: "worker".into(),
                expires_at: now.saturating_add(3_600_000),
            },
            now,
        )
        .await
        .context("creating the local worker's join token")?;
    Ok(token)
}

/// Progress bars for init and proving, a line per identity step and per epoch; stops everything once every
/// identity has `until_atxs` ATXs accepted.
async fn show_progress(
    state: AppState,
    devnet: Arc<Devnet>,
    smeshing: Option<SmeshingStatus>,
    ids: Vec<uuid::Uuid>,
    until_atxs: Option<usize>,
    stop_tx: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    // Above the bars on a terminal; plain lines otherwise (a log, a test).
    let say = |line: String| {
        if terminal {
            let _ = multi.println(line);
        } else {
            println!("{line}");
        }
    };
    let style =
        ProgressStyle::with_template("{msg:12} init [{elapsed_precise}] {wide_bar} {pos}/{len} labels")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let prove_style =
        ProgressStyle::with_template("{msg:12} prove [{elapsed_precise}] {wide_bar} {pos}/{len} labels read")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: Vec<Option<ProgressBar>> = vec![None; ids.len()];
    let mut prove_bars: Vec<Option<ProgressBar>> = vec![None; ids.len()];
    let mut last_steps: std::collections::HashMap<uuid::Uuid, String> = Default::default();
    let mut last_epoch = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let store = state.store();
        let mut names = std::collections::HashMap::new();
        let mut node_ids = Vec::new();
        // Labels read by each identity's running proof pass (workers report it with the lease).
        let reading: std::collections::HashMap<uuid::Uuid, u64> = store
            .list_live_jobs()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j.kind == JobKind::Prove && j.state == JobState::Leased)
            .map(|j| {
                let done = j
                    .progress
                    .as_ref()
                    .and_then(|p| p.get("done"))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                (j.identity_id, done)
            })
            .collect();
        for (k, id) in ids.iter().enumerate() {
            let Ok(ident) = store.get_identity(*id).await else {
                continue;
            };
            let total = u64::from(ident.num_units) * ident.labels_per_unit;
            match (&prove_bars[k], reading.get(id)) {
                (None, Some(done)) => {
                    let pb = multi.add(ProgressBar::new(total));
                    pb.set_style(prove_style.clone());
                    pb.set_message(ident.name.clone());
                    pb.set_position((*done).min(total));
                    prove_bars[k] = Some(pb);
                }
                (Some(pb), Some(done)) => pb.set_position((*done).min(total)),
                (Some(pb), None) => {
                    pb.finish_and_clear();
                    prove_bars[k] = None;
                }
                (None, None) => {}
            }
            names.insert(*id, ident.name.clone());
            node_ids.push(ident.node_id);
            let done = store.labels_done(*id).await.unwrap_or(0);
            let initializing = matches!(ident.state, IdentityState::Created | IdentityState::Initializing);
            match (&bars[k], initializing) {
                (None, true) => {
                    let pb = multi.add(ProgressBar::new(total));
                    pb.set_style(style.clone());
                    pb.set_message(ident.name.clone());
                    pb.set_position(done);
                    bars[k] = Some(pb);
                }
                (Some(pb), true) => pb.set_position(done),
                (Some(pb), false) => {
                    pb.set_position(total);
                    pb.finish();
                    say(format!("{}: initialized ({total} labels)", ident.name));
                    bars[k] = None;
                }
                (None, false) => {}
            }
        }
        if let Some(status) = &smeshing {
            let steps: Vec<(uuid::Uuid, String)> = status
                .lock()
                .map(|s| s.iter().map(|(id, st)| (*id, st.to_string())).collect())
                .unwrap_or_default();
            for (id, step) in steps {
                if last_steps.get(&id) != Some(&step) {
                    let name = names.get(&id).cloned().unwrap_or_else(|| id.to_string());
                    say(format!("{name}: {step}"));
                    last_steps.insert(id, step);
                }
            }
        }
        // A line per epoch: ATXs, eligibility, rewards.
        let d = devnet.clone();
        let summary = tokio::task::spawn_blocking(move || epoch_summary(d.as_ref(), &node_ids)).await;
        if let Ok(Some(s)) = summary {
            if last_epoch != Some(s.epoch) {
                last_epoch = Some(s.epoch);
                say(format!(
                    "epoch {}: {} ATX(s) published, {} identit{} eligible ({} slots), rewards {} smidge",
                    s.epoch,
                    s.atxs,
                    s.eligible,
                    if s.eligible == 1 { "y" } else { "ies" },
                    s.slots,
                    s.rewards
                ));
            }
            if let Some(n) = until_atxs {
                if s.min_atxs >= n {
                    say(format!("every identity has {n} ATX(s): stopping"));
                    let _ = stop_tx.send(true);
                    break;
                }
            }
        }
    }
    for pb in bars.into_iter().chain(prove_bars).flatten() {
        pb.abandon();
    }
}

struct EpochSummary {
    epoch: u32,
    atxs: usize,
    min_atxs: usize,
    eligible: usize,
    slots: u64,
    rewards: u64,
}

fn epoch_summary(node: &dyn NodeBridge, idents: &[[u8; 32]]) -> Option<EpochSummary> {
    let now = node.now().ok()?;
    let mut s = EpochSummary {
        epoch: now.epoch,
        atxs: 0,
        min_atxs: usize::MAX,
        eligible: 0,
        slots: 0,
        rewards: 0,
    };
    let mut coinbases = std::collections::BTreeSet::new();
    for id in idents {
        let atxs = node.atxs_of(id).ok()?;
        s.atxs += atxs.len();
        s.min_atxs = s.min_atxs.min(atxs.len());
        for a in &atxs {
            coinbases.insert(a.coinbase);
        }
        if let Ok(Some(e)) = node.eligibility(id, now.epoch) {
            s.eligible += 1;
            s.slots += u64::from(e.slots);
        }
    }
    for c in coinbases {
        if let Ok(rewards) = node.rewards_of(&Address(c), 0) {
            s.rewards += rewards
                .iter()
                .filter(|r| idents.contains(&r.smesher))
                .map(|r| r.total)
                .sum::<u64>();
        }
    }
    if idents.is_empty() {
        s.min_atxs = 0;
    }
    Some(s)
}
