//! `smeshfleet post ...`: postcli-compatible PoST data commands.
//!
//! Exit codes: 0 success; 1 the proof is invalid (verify) or the data has bad labels (check);
//! 2 bad input, and no file was changed; 3 the work failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::progress;
use super::CliError;

mod bench;
mod commands;

pub use commands::run;

/// Mainnet k2pow difficulty for one space unit.
pub const MAINNET_POW_DIFFICULTY: &str = "000dfb23b0979b4b000000000000000000000000000000000000000000000000";

#[derive(Debug, Subcommand)]
pub enum PostCommand {
    /// Initialize (or resume) a PoST data directory.
    Init(InitArgs),
    /// Generate a proof for a challenge from a data directory.
    Prove(ProveArgs),
    /// Verify a proof file against a data directory's metadata (exit 0 valid, 1 invalid).
    Verify(VerifyArgs),
    /// Re-derive a sampled fraction of the stored labels and report every mismatch.
    Check(CheckArgs),
    /// Measure labels/s, proving MiB/s and verification time on this machine.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Print one machine-readable JSON result object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "SMESHFLEET_POST_DATADIR")]
    pub datadir: PathBuf,
    /// Node id: the identity's ed25519 public key, 64 hex digits.
    #[arg(long)]
    pub node_id: String,
    /// Commitment ATX id, 64 hex digits.
    #[arg(long)]
    pub commitment_atx_id: String,
    /// Number of space units.
    #[arg(long)]
    pub num_units: u32,
    /// Labels per space unit (mainnet: 2^32).
    #[arg(long, default_value_t = 4_294_967_296)]
    pub labels_per_unit: u64,
    /// Bytes per postdata_<k>.bin file.
    #[arg(long, default_value_t = 4_294_967_296)]
    pub max_file_size: u64,
    /// scrypt N of the labels.
    #[arg(long, default_value_t = 8192)]
    pub scrypt_n: u64,
    /// First file to initialize (inclusive).
    #[arg(long)]
    pub from_file: Option<u64>,
    /// Last file to initialize (inclusive).
    #[arg(long)]
    pub to_file: Option<u64>,
    /// CPU threads (0 = all logical CPUs).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RandomXModeArg {
    /// 256 MiB cache, slow hashes: for small proofs and verification.
    Light,
    /// 2 GiB dataset (about a minute to build), fast hashes: for mainnet proofs.
    Fast,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[arg(long, env = "SMESHFLEET_POST_DATADIR")]
    pub datadir: PathBuf,
    /// 32-byte challenge, 64 hex digits (all zero for an identity's initial proof).
    #[arg(long)]
    pub challenge: String,
    #[arg(long, default_value_t = 26)]
    pub k1: u32,
    #[arg(long, default_value_t = 37)]
    pub k2: u32,
    /// k2pow difficulty for one space unit, 64 hex digits.
    #[arg(long, default_value = MAINNET_POW_DIFFICULTY)]
    pub pow_difficulty: String,
    /// Nonces per pass over the data: a multiple of 16 from 16 to 4096.
    #[arg(long, default_value_t = 288)]
    pub nonces: u32,
    /// Threads for the data scan and the k2pow search (0 = all logical CPUs).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value_t = RandomXModeArg::Fast)]
    pub randomx: RandomXModeArg,
    /// Write the proof JSON here (atomically) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, env = "SMESHFLEET_POST_DATADIR")]
    pub datadir: PathBuf,
    /// Proof file: {"nonce": u32, "indices": "<base64>", "pow": u64}.
    #[arg(long)]
    pub proof: PathBuf,
    #[arg(long)]
    pub challenge: String,
    #[arg(long, default_value_t = 26)]
    pub k1: u32,
    #[arg(long, default_value_t = 37)]
    pub k2: u32,
    /// Re-derive only K3 randomly chosen indices (default: all K2).
    #[arg(long)]
    pub k3: Option<u32>,
    /// Seed of the K3 subset, hex (default: random).
    #[arg(long)]
    pub seed: Option<String>,
    #[arg(long, default_value = MAINNET_POW_DIFFICULTY)]
    pub pow_difficulty: String,
    #[arg(long, default_value_t = 8192)]
    pub scrypt_n: u64,
    /// Also reject duplicate indices, indices beyond the data and a pow >= 2^56.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, env = "SMESHFLEET_POST_DATADIR")]
    pub datadir: PathBuf,
    /// Fraction of each file's labels to re-derive, in (0, 1].
    #[arg(long, default_value_t = 0.001)]
    pub fraction: f64,
    #[arg(long, default_value_t = 8192)]
    pub scrypt_n: u64,
    /// CPU threads (0 = all logical CPUs).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Threads for the "all threads" label row (0 = all logical CPUs).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seconds to measure each label row.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub common: Common,
}

/// Parse a 64-hex-digit value; the error names the flag.
pub fn parse_hex32(flag: &str, s: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != 64 {
        return Err(anyhow!(
            "--{flag}: expected 64 hex digits, got {} characters",
            s.len()
        ));
    }
    let v = hex::decode(s).map_err(|e| anyhow!("--{flag}: not hex: {e}"))?;
    v.try_into().map_err(|_| anyhow!("--{flag}: expected 32 bytes"))
}

/// A stop flag raised by SIGINT or SIGTERM, so long work ends cleanly and can resume.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing a signal handler")?;
    }
    Ok(stop)
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Print the JSON result object, or nothing (text output is printed by the command).
pub fn emit_json(json: bool, value: serde_json::Value) {
    if json {
        println!("{value}");
    }
}

pub(crate) fn ok_json(started: Instant, mut v: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ok".into(), json!(true));
        obj.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
    }
    v
}

pub(crate) fn input(json: bool, e: impl Into<anyhow::Error>) -> CliError {
    CliError::input(json, e)
}

pub(crate) fn runtime(json: bool, e: impl Into<anyhow::Error>) -> CliError {
    CliError::runtime(json, e)
}

pub(crate) use progress::bar;
pub(crate) type CmdResult = Result<ExitCode, CliError>;
