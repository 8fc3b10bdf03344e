//! `smeshfleet up` end to end, as a user runs it: one real process holding the embedded devnet,
//! the coordinator and a local worker. Two identities are created, initialized on the CPU, prove
//! their initial PoST, are spread over the devnet's two PoET phases, register, prove over the PoET
//! proof and publish ATXs in two consecutive epochs; the node pays their coinbase, and a spend
//! from the coinbase wallet (spawn, then spend, signed with the devnet wallet key `up` keeps in
//! its data directory) is applied. Ctrl-C (SIGINT) stops it cleanly, and a second `up` on the same
//! directory continues: the same identities and worker, the same chain (ATXs, the wallet's nonce,
//! the spend), and a new ATX on top of it.

#[path = "support/http.rs"]
mod http;
#[path = "support/process.rs"]
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use node_bridge::vm::tx::{wallet_self_spawn, wallet_spend};
use node_bridge::vm::wallet_address;
use serde_json::{json, Value};

use http::{get_json, post_as};
use process::{free_port, spawn_until, Guard};

const TOKEN: &str = "up-e2e-admin-token-0123456789";

fn up(dir: &std::path::Path, port: u16) -> Guard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smeshfleet"));
    cmd.args(["up", "--identities", "2", "--gpus", "none", "--cpu-threads", "2"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("SMESHFLEET_ADMIN_TOKEN", TOKEN)
        .env("SMESHFLEET_KEYSTORE_PASSPHRASE", "up-e2e keystore passphrase")
        .env("RUST_LOG", "warn,orchestrator::smeshing=info");
    let (guard, _) = spawn_until(&mut cmd, "smeshfleet is up");
    guard
}

/// Polls `f` every second until it returns `Some`, for at most `limit`; panics naming `what`
/// with the last state seen.
async fn wait<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> (Option<T>, Value)) -> T {
    let start = Instant::now();
    loop {
        let (done, state) = f().await;
        if let Some(v) = done {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; last: {state:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn hex_bytes<const N: usize>(v: &Value) -> [u8; N] {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("hex string expected, got {v}"));
    let b = hex::decode(s).expect("hex");
    <[u8; N]>::try_from(b.as_slice()).expect("length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_smeshes_two_identities_through_two_epochs_earns_and_spends() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let dir = tmp.path().join("up");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut guard = up(&dir, port);
    let http = reqwest::Client::new();

    // The node answers with its epoch and layer.
    let node = get_json(&http, &format!("{base}/api/v1/node"), TOKEN).await;
    assert!(node["epoch"].is_u64() && node["layer"].is_u64(), "{node}");
    let genesis_id: [u8; 20] = hex_bytes(&node["genesis_id"]);

    // Both identities publish ATXs in two consecutive epochs and earn (devnet epochs are a
    // minute: the first ATX is published in epoch 1, the second in epoch 2, rewards from epoch 2).
    let identities = wait(
        "two ATXs and rewards for both identities",
        Duration::from_secs(420),
        async || {
            let list = get_json(&http, &format!("{base}/api/v1/identities"), TOKEN).await;
            let ids = list.as_array().cloned().unwrap_or_default();
            let done = ids.len() == 2
                && ids.iter().all(|i| {
                    i["atxs_published"].as_u64().unwrap_or(0) >= 2
                        && i["rewards_total"].as_u64().unwrap_or(0) > 0
                });
            (done.then_some(ids), list)
        },
    )
    .await;
    let mut atxs_before_stop = Vec::new();
    for ident in &identities {
        let node_id = ident["node_id"].as_str().expect("node id");
        let atxs = get_json(
            &http,
            &format!("{base}/api/v1/node/atxs?smesher={node_id}"),
            TOKEN,
        )
        .await;
        let epochs: Vec<u64> = atxs
            .as_array()
            .expect("atxs")
            .iter()
            .map(|a| a["publish_epoch"].as_u64().expect("epoch"))
            .collect();
        assert!(
            epochs.windows(2).any(|w| w[1] == w[0] + 1),
            "ATXs in two consecutive epochs: {epochs:?}"
        );
        atxs_before_stop.extend(
            atxs.as_array()
                .expect("atxs")
                .iter()
                .map(|a| a["id"].as_str().expect("atx id").to_owned()),
        );
        // Smeshing on: between two cycles, or already in the next one.
        let state = ident["state"].as_str().expect("state");
        assert!(
            [
                "submitted",
                "waiting_for_challenge",
                "k2pow",
                "proving",
                "proof_verified"
            ]
            .contains(&state),
            "{ident}"
        );
    }
    // The devnet's two PoETs have different phases: the two identities are spread over them.
    let mut phases: Vec<u64> = identities
        .iter()
        .map(|i| i["poet_phase_ms"].as_u64().expect("placed in a PoET phase"))
        .collect();
    phases.sort_unstable();
    assert_eq!(phases, vec![20_000, 40_000], "{identities:?}");

    // The coinbase wallet (its key is the devnet wallet `up` made) spends what it earned.
    let key_hex = std::fs::read_to_string(dir.join("devnet-wallet.key")).expect("wallet key");
    let seed: [u8; 32] = hex_bytes(&Value::String(key_hex.trim().to_owned()));
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let wallet = wallet_address(&key.verifying_key().to_bytes());
    let wallet_text = wallet.encode("standalone").expect("address");
    assert_eq!(identities[0]["coinbase"], wallet_text.as_str());
    let account_url = format!("{base}/api/v1/node/accounts/{wallet_text}");
    let before = get_json(&http, &account_url, TOKEN).await;
    let balance = before["balance"].as_u64().expect("balance");
    assert!(balance > 0, "the coinbase earned: {before}");
    assert!(
        before["template"].is_null(),
        "a coinbase starts as a stub: {before}"
    );

    let submit = async |raw: Vec<u8>| -> String {
        let (status, v) = post_as(
            &http,
            &format!("{base}/api/v1/node/transactions"),
            TOKEN,
            json!({"raw": hex::encode(raw)}),
        )
        .await;
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().expect("tx id").to_owned()
    };
    let applied = async |id: &str| -> Value {
        wait(
            &format!("transaction {id} applied"),
            Duration::from_secs(60),
            async || {
                let v = get_json(&http, &format!("{base}/api/v1/node/transactions/{id}"), TOKEN).await;
                let pending = v["status"].as_str().is_none_or(|s| s == "pending");
                ((!pending).then(|| v.clone()), v)
            },
        )
        .await
    };
    let spawn = submit(wallet_self_spawn(&key, 0, 1, &genesis_id)).await;
    let spawned = applied(&spawn).await;
    assert_eq!(spawned["status"], "applied", "{spawned}");
    let destination = wallet_address(&[0x42; 32]);
    let amount = 1_000;
    let spend = submit(wallet_spend(&key, destination, amount, 1, 1, &genesis_id)).await;
    let spent = applied(&spend).await;
    assert_eq!(spent["status"], "applied", "{spent}");
    let dest = get_json(
        &http,
        &format!(
            "{base}/api/v1/node/accounts/{}",
            destination.encode("standalone").expect("addr")
        ),
        TOKEN,
    )
    .await;
    assert_eq!(dest["balance"], amount, "{dest}");
    let after = get_json(&http, &account_url, TOKEN).await;
    assert_eq!(after["next_nonce"], 2, "{after}");
    assert!(after["template"].is_string(), "spawned: {after}");

    // Ctrl-C: a clean stop. A second `up` continues with the same identities and keys.
    guard.signal("-INT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = guard.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "up did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "up exited with {status}");
    let port = free_port();
    let mut again = up(&dir, port);
    let list = get_json(
        &http,
        &format!("http://127.0.0.1:{port}/api/v1/identities"),
        TOKEN,
    )
    .await;
    let mut before: Vec<&str> = identities
        .iter()
        .map(|i| i["node_id"].as_str().expect("id"))
        .collect();
    let mut now: Vec<&str> = list
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| i["node_id"].as_str().expect("id"))
        .collect();
    before.sort_unstable();
    now.sort_unstable();
    assert_eq!(before, now, "the same identities after a restart");
    // The local worker comes back as itself (enrolled once), on the new address.
    let workers_url = format!("http://127.0.0.1:{port}/api/v1/workers");
    wait(
        "the local worker back online",
        Duration::from_secs(60),
        async || {
            let w = get_json(&http, &workers_url, TOKEN).await;
            let ws = w.as_array().cloned().unwrap_or_default();
            let back = ws.len() == 1 && ws[0]["state"] == "online";
            (back.then_some(()), w)
        },
    )
    .await;
    // The chain is kept: the ATXs, the wallet's nonce and the spend are still there...
    let base2 = format!("http://127.0.0.1:{port}");
    let chain_atxs = async || -> Vec<String> {
        let mut ids = Vec::new();
        for node_id in &now {
            let v = get_json(
                &http,
                &format!("{base2}/api/v1/node/atxs?smesher={node_id}"),
                TOKEN,
            )
            .await;
            ids.extend(
                v.as_array()
                    .expect("atxs")
                    .iter()
                    .map(|a| a["id"].as_str().expect("atx id").to_owned()),
            );
        }
        ids
    };
    let kept = chain_atxs().await;
    for id in &atxs_before_stop {
        assert!(kept.contains(id), "ATX {id} lost by the restart: {kept:?}");
    }
    let account = get_json(
        &http,
        &format!("{base2}/api/v1/node/accounts/{wallet_text}"),
        TOKEN,
    )
    .await;
    assert_eq!(account["next_nonce"], 2, "{account}");
    let tx = get_json(&http, &format!("{base2}/api/v1/node/transactions/{spend}"), TOKEN).await;
    assert_eq!(tx["status"], "applied", "{tx}");
    // ... and smeshing goes on from it: a new ATX, built on an ATX of the first run.
    wait(
        "an ATX published after the restart",
        Duration::from_secs(240),
        async || {
            let ids = chain_atxs().await;
            let more = ids.len() > kept.len();
            (more.then_some(()), json!(ids))
        },
    )
    .await;
    assert_eq!(process::stop(&mut again), Some(0));
}
