//! A throwaway PostgreSQL cluster for the storage tests: `initdb` into a temporary directory,
//! `pg_ctl start` listening only on a unix socket inside it (trust auth, fsync off), one fresh
//! database per test (`CREATE DATABASE`), and removal when the test binary exits.
//!
//! The cluster is started once per test binary. Rust never drops statics, so a detached watchdog
//! (`setsid sh`) waits for the test process to exit, then stops the cluster and deletes the
//! directory; this also cleans up after a panic, an abort or SIGKILL. A [`Cluster`] that is not
//! the shared one cleans up on `Drop`.
//!
//! Server binaries: `$SMESHFLEET_PG_BINDIR`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`. On Debian they come from the package
//! `postgresql`, which `scripts/deps.sh` installs. As root, initdb and the server run as the
//! `postgres` user (`runuser`), since PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use sqlx::{Connection, Executor, PgConnection};

pub struct Cluster {
    base: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    /// `Some(user)` when the server runs as another user (we are root).
    run_as: Option<String>,
    port: u16,
    shared: bool,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The shared cluster of this test binary, started on first use. Panics with what to do when
/// PostgreSQL is not installed or does not start.
pub fn shared() -> &'static Cluster {
    match SHARED.get_or_init(|| Cluster::start(true)) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("SMESHFLEET_PG_BINDIR").map(PathBuf::from) {
        return has_tools(&d).then_some(d);
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let d = e.path().join("bin");
            has_tools(&d).then_some((v, d))
        })
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| has_tools(d))
}

fn id_of(args: &[&str]) -> Result<u32, String> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(|e| format!("running id {args:?}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("id {args:?} printed {:?}", String::from_utf8_lossy(&out.stdout)))
}

impl Cluster {
    fn start(shared: bool) -> Result<Cluster, String> {
        let bindir = find_bindir().ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: the PostgreSQL half \
             of the storage tests needs them. Run scripts/deps.sh (it installs the Debian package \
             `postgresql`), or set SMESHFLEET_PG_BINDIR to the directory holding initdb."
                .to_owned()
        })?;
        let run_as = if id_of(&["-u"])? == 0 {
            Some("postgres".to_owned())
        } else {
            None
        };
        let base = tempfile::Builder::new()
            .prefix("smeshfleet-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("creating the cluster directory: {e}"))?
            .keep();
        if let Some(user) = &run_as {
            let uid = id_of(&["-u", user]).map_err(|e| format!("{e} (is there a `{user}` user?)"))?;
            let gid = id_of(&["-g", user])?;
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to {user}: {e}", base.display()))?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("finding a free port: {e}"))?;
        let cluster = Cluster {
            data: base.join("data"),
            base,
            bindir,
            run_as,
            port,
            shared,
        };
        if shared {
            cluster.spawn_watchdog();
        }

        let out = cluster
            .tool("initdb")
            .args(["-D"])
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let opts = format!(
            "-k {} -p {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            cluster.base.display(),
            cluster.port
        );
        let log = cluster.base.join("server.log");
        // The server inherits no pipe of ours (stdio null, output to the log file), or whoever
        // reads our output would wait for it.
        let status = cluster
            .tool("pg_ctl")
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("running pg_ctl start: {e}"))?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("pg_ctl start failed ({status}); server log:\n{log}"));
        }
        Ok(cluster)
    }

    /// A command running one of the server tools, as the server's user.
    fn tool(&self, name: &str) -> Command {
        let path = self.bindir.join(name);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn stop_command(&self) -> String {
        let pg_ctl = self.bindir.join("pg_ctl");
        let prefix = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        format!(
            "{prefix}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            pg_ctl.display(),
            self.data.display(),
            self.base.display()
        )
    }

    fn spawn_watchdog(&self) {
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.2; done; {}",
            std::process::id(),
            self.stop_command()
        );
        let mut cmd = if Path::new("/usr/bin/setsid").exists() || Path::new("/bin/setsid").exists() {
            let mut c = Command::new("setsid");
            c.args(["sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        // Not waited for: it outlives this process on purpose.
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The URL of database `db` over the unix socket.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{db}?host={}",
            self.port,
            self.base.display()
        )
    }

    /// Creates a new empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        self.url(&name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.shared {
            let _ = Command::new("sh")
                .args(["-c", &self.stop_command()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
