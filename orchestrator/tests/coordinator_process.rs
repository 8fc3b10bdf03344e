//! The real `smeshfleet coordinator` process on a real socket: first start generates its secrets
//! into 0600 files, serves health and the API, refuses a second coordinator on the same database,
//! stops cleanly on SIGTERM, and keeps its identities across a restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");

struct Coordinator {
    child: Child,
    url: String,
}

/// A coordinator is killed if the test panics before stopping it.
impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn start(data: &Path) -> Coordinator {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["coordinator", "--data-dir"])
        .arg(data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--reconcile-seconds",
            "1",
        ])
        .env_remove("SMESHFLEET_ADMIN_TOKEN")
        .env_remove("SMESHFLEET_KEYSTORE_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn coordinator");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("smeshfleet coordinator listening on ") {
            url = Some(rest.trim().to_owned());
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Coordinator {
        child,
        url: url.expect("the coordinator printed its address"),
    }
}

fn sigterm(c: &mut Coordinator) -> i32 {
    let ok = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = c.child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("coord");
    let mut c = start(&data);
    let http = reqwest::Client::new();

    let token_file = data.join("admin.token");
    let token = std::fs::read_to_string(&token_file)
        .expect("token file")
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["admin.token", "keystore.passphrase"] {
            let mode = std::fs::metadata(data.join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "data dir");
    }

    let r = http
        .get(format!("{}/healthz", c.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/api/v1/identities", c.url))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{}/api/v1/identities", c.url))
        .bearer_auth(&token)
        .json(&json!({"name": "kept", "num_units": 4}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");

    // The reconcile loop publishes a plan within a few rounds.
    let mut planned = false;
    for _ in 0..100 {
        let r = http
            .get(format!("{}/api/v1/plan", c.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("plan");
        if r.status() == 200 {
            planned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(planned, "no plan within 10 s");

    // A second coordinator on the same data directory refuses to start and says why.
    let out = Command::new(BIN)
        .args(["coordinator", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("second coordinator");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another smeshfleet coordinator"), "{err}");

    assert_eq!(sigterm(&mut c), 0, "clean exit on SIGTERM");

    // Restart: same token file, same identity, same key.
    let mut c = start(&data);
    let r = http
        .get(format!("{}/api/v1/identities", c.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.expect("json");
    assert_eq!(list[0]["node_id"], created["node_id"]);
    let pass = std::fs::read_to_string(data.join("keystore.passphrase")).expect("pass");
    let r = http
        .post(format!(
            "{}/api/v1/identities/{}/export",
            c.url,
            created["id"].as_str().expect("id")
        ))
        .bearer_auth(&token)
        .json(&json!({"passphrase": pass.trim()}))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    let key: Value = r.json().await.expect("json");
    assert_eq!(
        &key["key"].as_str().expect("key")[64..],
        created["node_id"].as_str().expect("node id")
    );
    assert_eq!(sigterm(&mut c), 0);

    // Keystore present, passphrase gone: refuse to start rather than make a new one.
    std::fs::remove_file(data.join("keystore.passphrase")).expect("rm");
    let out = Command::new(BIN)
        .args(["coordinator", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("SMESHFLEET_KEYSTORE_PASSPHRASE")
        .output()
        .expect("third coordinator");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no passphrase"));
}
