//! Real processes for the end-to-end tests: a free loopback port, a child killed when the test
//! panics, spawning until a readiness line, SIGTERM with a deadline. Included with `#[path]` by
//! each end-to-end test binary (not every binary uses every helper).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process that is killed if the test panics before stopping it.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Guard {
    pub fn sigkill(&mut self) {
        self.0.kill().expect("SIGKILL");
        let _ = self.0.wait();
    }

    pub fn signal(&self, sig: &str) {
        let s = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(s.success(), "kill {sig}");
    }
}

/// Spawns a command and waits for a stdout line starting with `ready`; returns the child and it.
pub fn spawn_until(cmd: &mut Command, ready: &str) -> (Guard, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut found = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with(ready) {
            found = Some(line);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (
        Guard(child),
        found.unwrap_or_else(|| panic!("the process never printed {ready:?}")),
    )
}

/// SIGTERM, then wait up to 60 s for the exit; the exit code, or None (killed) after the deadline.
pub fn stop(guard: &mut Guard) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status();
    let child = &mut guard.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `root` (recursively; unreadable directories are skipped).
pub fn walk_files(root: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
