//! Command-line front end. Each subcommand lives in its own module and returns a
//! [`CliError`] that says whether the caller gave bad input (exit 2) or the work failed (exit 3).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod coordinator;
pub mod post;
mod progress;
pub mod up;
pub mod worker;

/// smeshfleet: a self-hosted orchestrator for large Spacemesh smeshers.
#[derive(Debug, Parser)]
#[command(name = "smeshfleet", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole smeshing loop on this machine: an embedded devnet node, the coordinator and a
    /// local worker; identities are initialized, register with the PoETs, prove, publish ATXs
    /// and earn rewards.
    Up(up::UpArgs),
    /// PoST data: initialize, prove, verify, check, benchmark (postcli-compatible data).
    #[command(subcommand)]
    Post(post::PostCommand),
    /// Run the coordinator: identities, keys, state, scheduler and the REST API.
    Coordinator(coordinator::CoordinatorArgs),
    /// Run a worker on this rig: discover GPUs and disks, enroll, run the coordinator's jobs.
    Worker(worker::WorkerArgs),
    /// Print the coordinator's OpenAPI document.
    Openapi,
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Up(args) => up::run(args),
        Command::Post(cmd) => post::run(cmd),
        Command::Coordinator(args) => coordinator::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Openapi => {
            print!("{}", crate::api::openapi::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Who is at fault when a command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input is wrong (flags, files, a malformed proof): exit 2, nothing changed.
    Input,
    /// The work itself failed (I/O, a device): exit 3.
    Runtime,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Input => "input",
            ErrorKind::Runtime => "runtime",
        }
    }
}

#[derive(Debug)]
pub struct CliError {
    pub kind: ErrorKind,
    pub json: bool,
    pub source: anyhow::Error,
}

impl CliError {
    pub fn input(json: bool, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Input,
            json,
            source: source.into(),
        }
    }
    pub fn runtime(json: bool, source: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: ErrorKind::Runtime,
            json,
            source: source.into(),
        }
    }
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Input => 2,
            ErrorKind::Runtime => 3,
        }
    }
}
