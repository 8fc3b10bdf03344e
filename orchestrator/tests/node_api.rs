//! `/api/v1/node*` over a real store and keystore with the tiny embedded devnet attached (and
//! without one): the node's clock advancing, authentication, the `no_node` answer, bad input
//! naming its parameter, a funded account, transactions, and the identity view's
//! `atxs_published` / `rewards_total` before and after an ATX published end to end.

#[path = "support/router.rs"]
mod router;
use router::Resp;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use node_bridge::atx::validate::ZERO_CHALLENGE;
use node_bridge::bridge::{AtxSubmission, NodeBridge};
use node_bridge::clock::Clock;
use node_bridge::devnet::Devnet;
use node_bridge::rewards::SMIDGE_PER_SMH;
use node_bridge::testkit::{tiny_devnet_config, TinyPost, TINY_PARAMS};
use node_bridge::vm::{wallet_address, Address, HRP_MAINNET, HRP_STANDALONE};
use orchestrator::api::{self, ApiConfig, AppState};
use orchestrator::keystore::{KdfParams, Keystore, NodeId};
use orchestrator::metrics::Metrics;
use orchestrator::smeshing::{
    best_poet_proof, prepare_challenge, publish, register, AtxInputs, IdentityParams,
};
use orchestrator::store::Store;

const ADMIN: &str = "admin-token-for-tests-0123456789";
const PASSPHRASE: &str = "correct horse battery staple";

fn faucet() -> Address {
    wallet_address(&[0xfa; 32])
}

struct Env {
    app: Router,
    store: Store,
    keystore: Arc<Keystore>,
    devnet: Option<Arc<Devnet>>,
    _dir: tempfile::TempDir,
}

async fn env(with_node: bool) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&Store::sqlite_url(&dir.path().join("state.db")))
        .await
        .expect("store");
    let keystore = Arc::new(
        Keystore::create(
            dir.path().join("keystore"),
            PASSPHRASE,
            KdfParams::new(8, 1, 1).expect("kdf"),
        )
        .expect("keystore"),
    );
    let state = AppState::new(
        store.clone(),
        keystore.clone(),
        Arc::new(Metrics::new()),
        ADMIN,
        ApiConfig::default(),
    );
    let devnet = with_node.then(|| {
        let d = Devnet::with_pow_verifier(
            tiny_devnet_config(faucet()),
            node_bridge::testkit::randomx().clone(),
        )
        .expect("devnet");
        Arc::new(d)
    });
    if let Some(d) = &devnet {
        assert!(state.set_node(d.clone()));
    }
    Env {
        app: api::router(state),
        store,
        keystore,
        devnet,
        _dir: dir,
    }
}

impl Env {
    fn devnet(&self) -> &Devnet {
        self.devnet.as_deref().expect("a devnet")
    }

    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        router::call(&self.app, method, uri, token, body).await
    }

    async fn get(&self, uri: &str, token: &str) -> Resp {
        self.call(Method::GET, uri, Some(token), None).await
    }

    async fn submit(&self, token: &str, raw: &str) -> Resp {
        self.call(
            Method::POST,
            "/api/v1/node/transactions",
            Some(token),
            Some(json!({ "raw": raw })),
        )
        .await
    }

    async fn token(&self, role: &str) -> String {
        router::token(&self.app, ADMIN, role).await
    }

    async fn create_identity(&self, name: &str, coinbase: Option<&str>) -> Value {
        let r = self
            .call(
                Method::POST,
                "/api/v1/identities",
                Some(ADMIN),
                Some(json!({"name": name, "num_units": 1, "labels_per_unit": 256,
                    "max_file_size": 16 * 256, "scrypt_n": 2, "coinbase": coinbase})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert!(r.body["error"]["message"].is_string(), "{}", r.text);
}

fn assert_invalid(r: &Resp, field: &str) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let msg = r.body["error"]["message"].as_str().expect("message");
    assert!(
        msg.starts_with(&format!("{field}:")),
        "{field} not named: {}",
        r.text
    );
}

#[tokio::test]
async fn node_state_advances_with_the_devnet() {
    let e = env(true).await;
    let viewer = e.token("viewer").await;

    let r = e.call(Method::GET, "/api/v1/node", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");

    let r = e.get("/api/v1/node", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = &r.body;
    assert_eq!((b["epoch"].as_u64(), b["layer"].as_u64()), (Some(0), Some(0)));
    assert_eq!(b["now_ms"], 0);
    assert!(b["applied_layer"].is_null());
    // The one-process devnet cannot tell whether it is synced.
    assert!(b["synced"].is_null());
    assert_eq!(b["layers_per_epoch"], 12);
    assert_eq!(b["layer_duration_ms"], 5_000);
    assert_eq!(b["epoch_duration_ms"], 60_000);
    assert_eq!(b["effective_genesis"], 23);
    let g = e.devnet().genesis().expect("genesis");
    assert_eq!(b["genesis_id"], hex::encode(g.genesis_id));
    assert_eq!(b["golden_atx"], hex::encode(g.golden_atx));

    // Three epochs and 7 s later: epoch 3, layer 37.
    e.devnet().advance(187_000).expect("advance");
    let r = e.get("/api/v1/node", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["epoch"].as_u64(),
            r.body["layer"].as_u64(),
            r.body["now_ms"].as_u64()
        ),
        (Some(3), Some(37), Some(187_000))
    );
    assert_eq!(r.body["applied_layer"], 36);

    // PoETs and their schedule: round r starts at 40 s + r·60 s and runs 50 s.
    let r = e.get("/api/v1/node/poets", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let poets = r.body.as_array().expect("poets");
    let ids: Vec<&str> = poets.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["fast", "slow"]);
    let fast = &poets[0];
    assert_eq!(
        (
            fast["phase_shift_ms"].as_u64(),
            fast["cycle_ms"].as_u64(),
            fast["cycle_gap_ms"].as_u64()
        ),
        (Some(40_000), Some(60_000), Some(10_000))
    );
    assert_eq!(fast["leaves_per_second"], 20);
    // At 187 s rounds 0-2 have started (at 40, 100, 160 s); round 3 is open.
    assert_eq!(fast["open_round"], 3);
    assert_eq!(fast["open_round_start_ms"], 220_000);
    assert_eq!(fast["current_round"], 2);
    assert_eq!(fast["current_round_end_ms"], 210_000);

    // A round that has not ended (and one without members, which never produces a proof): 404.
    let r = e.get("/api/v1/node/poets/fast/rounds/3", &viewer).await;
    assert_error(&r, StatusCode::NOT_FOUND, "round_not_ended");
    let r = e.get("/api/v1/node/poets/nope/rounds/0", &viewer).await;
    assert_error(&r, StatusCode::NOT_FOUND, "poet_not_found");

    // Layers: one applied, one not yet.
    let r = e.get("/api/v1/node/layers/36/rewards", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["layer"], 36);
    assert!(r.body["credits"].as_array().expect("credits").is_empty());
    let r = e.get("/api/v1/node/layers/40/rewards", &viewer).await;
    assert_error(&r, StatusCode::NOT_FOUND, "layer_not_applied");

    // An identity the node does not know: no ATX, no eligibility, not flagged.
    let stranger = hex::encode([0x5a; 32]);
    let r = e
        .get(&format!("/api/v1/node/atxs?smesher={stranger}"), &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!([]));
    let r = e
        .get(
            &format!("/api/v1/node/eligibility?smesher={stranger}&epoch=3"),
            &viewer,
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_eligible");
    let r = e
        .get(&format!("/api/v1/node/malfeasance/{stranger}"), &viewer)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_malicious");
}

#[tokio::test]
async fn without_a_node_every_node_route_is_503() {
    let e = env(false).await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let any = hex::encode([1u8; 32]);
    for uri in [
        "/api/v1/node".to_owned(),
        "/api/v1/node/poets".to_owned(),
        "/api/v1/node/poets/fast/rounds/0".to_owned(),
        format!("/api/v1/node/atxs?smesher={any}"),
        format!("/api/v1/node/eligibility?smesher={any}&epoch=1"),
        "/api/v1/node/rewards?coinbase=whatever".to_owned(),
        "/api/v1/node/layers/1/rewards".to_owned(),
        "/api/v1/node/accounts/whatever".to_owned(),
        format!("/api/v1/node/transactions/{any}"),
        format!("/api/v1/node/malfeasance/{any}"),
    ] {
        let r = e.call(Method::GET, &uri, None, None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        let r = e.get(&uri, &viewer).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "no_node");
        let msg = r.body["error"]["message"].as_str().expect("message");
        assert!(msg.contains("smeshfleet up"), "{uri}: {msg}");
    }
    let r = e
        .call(
            Method::POST,
            "/api/v1/node/transactions",
            Some(&operator),
            Some(json!({"raw": "00"})),
        )
        .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "no_node");

    // The identity view still carries the node's fields, as zeros.
    let created = e.create_identity("solo", None).await;
    assert_eq!(
        (
            created["atxs_published"].as_u64(),
            created["rewards_total"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let r = e
        .get(
            &format!("/api/v1/identities/{}", created["id"].as_str().expect("id")),
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["atxs_published"].as_u64(),
            r.body["rewards_total"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn bad_input_names_its_parameter() {
    let e = env(true).await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let good = hex::encode([2u8; 32]);

    for uri in [
        "/api/v1/node/atxs?smesher=zz".to_owned(),
        format!("/api/v1/node/atxs?smesher={}", &good[..62]),
        "/api/v1/node/eligibility?smesher=xyz&epoch=1".to_owned(),
        "/api/v1/node/malfeasance/not-hex".to_owned(),
    ] {
        let r = e.get(&uri, &viewer).await;
        assert_invalid(&r, "smesher");
    }
    for (uri, field) in [
        ("/api/v1/node/accounts/not-an-address", "address"),
        ("/api/v1/node/accounts/standalone1qqqqqqqqqq", "address"),
        (
            "/api/v1/node/rewards?coinbase=sm1nothing&from_layer=0",
            "coinbase",
        ),
        ("/api/v1/node/transactions/abcd", "id"),
    ] {
        let r = e.get(uri, &viewer).await;
        assert_invalid(&r, field);
    }
    // A bech32 address whose checksum is broken.
    let mut broken = faucet().encode(HRP_STANDALONE).expect("encode");
    let last = broken.pop().expect("char");
    broken.push(if last == 'q' { 'p' } else { 'q' });
    let r = e.get(&format!("/api/v1/node/accounts/{broken}"), &viewer).await;
    assert_invalid(&r, "address");

    // Transactions: operators only; not hex, empty or not a transaction is a clear 422.
    let r = e.submit(&viewer, "00").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e.submit(&operator, "not hex").await;
    assert_invalid(&r, "raw");
    let r = e.submit(&operator, "").await;
    assert_invalid(&r, "raw");
    let r = e.submit(&operator, "deadbeef").await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_tx");
    assert!(r.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("raw:")));
    let r = e
        .call(
            Method::POST,
            "/api/v1/node/transactions",
            Some(&operator),
            Some(json!({"raw": "00", "extra": 1})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    // An unknown transaction: 404.
    let r = e.get(&format!("/api/v1/node/transactions/{good}"), &viewer).await;
    assert_error(&r, StatusCode::NOT_FOUND, "tx_not_found");
}

#[tokio::test]
async fn accounts_and_transactions() {
    let e = env(true).await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let balance = 1_000_000 * SMIDGE_PER_SMH;

    // The faucet, by its bech32 form under either prefix and by hex.
    let std = faucet().encode(HRP_STANDALONE).expect("encode");
    for form in [
        std.clone(),
        faucet().encode(HRP_MAINNET).expect("encode"),
        faucet().to_hex(),
    ] {
        let r = e.get(&format!("/api/v1/node/accounts/{form}"), &viewer).await;
        assert_eq!(r.status, StatusCode::OK, "{form}: {}", r.text);
        assert_eq!(r.body["balance"].as_u64(), Some(balance), "{}", r.text);
        assert_eq!(r.body["address"], std);
        assert_eq!(r.body["address_hex"], faucet().to_hex());
        assert_eq!(r.body["next_nonce"], 0);
        // A genesis account is a stub until it spawns.
        assert!(r.body["template"].is_null(), "{}", r.text);
    }
    // An account nobody funded: zero.
    let empty = wallet_address(&[0x11; 32])
        .encode(HRP_STANDALONE)
        .expect("encode");
    let r = e.get(&format!("/api/v1/node/accounts/{empty}"), &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["balance"], 0);

    // A well-formed self-spawn of an unfunded wallet: accepted, pending, then settled in the
    // first applied layer (it cannot pay its fee).
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let genesis = e.devnet().genesis().expect("genesis");
    let raw = node_bridge::vm::tx::wallet_self_spawn(&key, 0, 1, &genesis.genesis_id);
    let r = e
        .call(
            Method::POST,
            "/api/v1/node/transactions",
            Some(&operator),
            Some(json!({"raw": hex::encode(&raw)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(id, hex::encode(blake3::hash(&raw).as_bytes()));
    let r = e.get(&format!("/api/v1/node/transactions/{id}"), &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    assert!(r.body["layer"].is_null());

    // Past the effective genesis (layer 23) the layer applies it.
    e.devnet().advance(24 * 5_000).expect("advance");
    let r = e.get(&format!("/api/v1/node/transactions/{id}"), &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ne!(r.body["status"], "pending", "{}", r.text);
    assert_eq!(r.body["layer"], 23, "{}", r.text);

    // Rewards of an address nobody smeshes for: none.
    let r = e
        .get(
            &format!("/api/v1/node/rewards?coinbase={std}&from_layer=0"),
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["total"].as_u64(),
            r.body["rewards"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
}

/// An identity created through the API smeshes on the devnet (the builder's steps, as
/// `tests/smeshing.rs` runs them): its view counts the ATX, then the rewards its coinbase earns.
#[tokio::test]
async fn identity_view_counts_atxs_and_rewards() {
    let e = env(true).await;
    let viewer = e.token("viewer").await;
    let devnet = e.devnet();
    let bridge: &dyn NodeBridge = devnet;
    let coinbase = wallet_address(&[0xc0; 32]);
    let coinbase_text = coinbase.encode(HRP_STANDALONE).expect("encode");

    let created = e.create_identity("smesher-1", Some(&coinbase_text)).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let uri = format!("/api/v1/identities/{id}");
    let r = e.get(&uri, &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["atxs_published"].as_u64(),
            r.body["rewards_total"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // Publish the identity's initial ATX.
    let mut node_bytes = [0u8; 32];
    hex::decode_to_slice(created["node_id"].as_str().expect("node id"), &mut node_bytes).expect("hex");
    let node_id = NodeId::from_bytes(node_bytes);
    let g = bridge.genesis().expect("genesis");
    let clock = Clock::new(bridge.clock_params().expect("params")).expect("clock");
    let data = TinyPost::new(node_bytes, &g.golden_atx, TINY_PARAMS);
    let identity = IdentityParams {
        node_id,
        commitment_atx: g.golden_atx,
        poet_schedule: None,
        initial_post: Some(data.prove(&ZERO_CHALLENGE, 1)),
    };
    let timeline = clock.builder_timeline(0, None).expect("timeline");
    devnet.advance(timeline.register_at_ms).expect("advance");
    let prepared = prepare_challenge(bridge, &identity, timeline.register_at_ms).expect("challenge");
    let registrations = register(
        bridge,
        &e.keystore,
        node_id,
        prepared.publish_epoch(),
        prepared.challenge_hash,
        Some(&prepared.timeline),
    )
    .expect("register");
    devnet.advance(timeline.round_end_ms + 100).expect("advance");

    // The finished round, as the API shows it.
    let r = e.get("/api/v1/node/poets/fast/rounds/0", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["leaf_count"].as_u64(), r.body["member_count"].as_u64()),
        (Some(1_000), Some(1))
    );

    let best = best_poet_proof(
        bridge,
        node_id,
        prepared.publish_epoch(),
        &prepared.challenge_hash,
        &registrations,
    )
    .expect("best proof");
    assert_eq!(r.body["proof_ref"], hex::encode(best.proof_ref));
    let inputs = AtxInputs {
        coinbase: coinbase.0,
        num_units: 1,
        post: data.prove(&best.proof_ref, 1),
        labels_per_unit: TINY_PARAMS.labels_per_unit,
        vrf_nonce: Some(data.vrf_nonce(1)),
    };
    let published = publish(bridge, &e.store, &e.keystore, &prepared, &best, inputs)
        .await
        .expect("publish");
    assert!(
        matches!(
            published.submission,
            AtxSubmission::Accepted { duplicate: false, .. }
        ),
        "{:?}",
        published.submission
    );

    let r = e.get(&uri, &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["atxs_published"].as_u64(),
            r.body["rewards_total"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let r = e.get("/api/v1/identities", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body[0]["atxs_published"], 1, "{}", r.text);

    let smesher = hex::encode(node_bytes);
    let r = e
        .get(&format!("/api/v1/node/atxs?smesher={smesher}"), &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let atxs = r.body.as_array().expect("atxs");
    assert_eq!(atxs.len(), 1);
    assert_eq!(atxs[0]["id"], hex::encode(published.atx_id));
    assert_eq!(
        (
            atxs[0]["publish_epoch"].as_u64(),
            atxs[0]["target_epoch"].as_u64(),
            atxs[0]["sequence"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(atxs[0]["coinbase"], coinbase_text);
    assert_eq!(
        (atxs[0]["ticks"].as_u64(), atxs[0]["weight"].as_u64()),
        (Some(20), Some(20))
    );

    // Eligible in the target epoch (a projection until epoch 2 starts).
    let r = e
        .get(
            &format!("/api/v1/node/eligibility?smesher={smesher}&epoch=2"),
            &viewer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["atx"], hex::encode(published.atx_id));
    assert!(r.body["slots"].as_u64().is_some_and(|s| s > 0), "{}", r.text);
    assert_eq!(r.body["fixed"], false);

    // Through the target epoch the identity votes in its layers (the coordinator's Voter) and the
    // coinbase earns; the identity view sums it.
    let uuid: uuid::Uuid = id.parse().expect("uuid");
    e.store
        .update_identity_state(uuid, orchestrator::store::IdentityState::Ready, None, 0)
        .await
        .expect("ready");
    let ident = e.store.get_identity(uuid).await.expect("identity");
    let arc = e.devnet.clone().expect("a devnet");
    let mut voter = orchestrator::smeshing::Voter::new(e.store.clone(), e.keystore.clone(), arc);
    let params = bridge.clock_params().expect("params");
    for layer in 2 * params.layers_per_epoch..3 * params.layers_per_epoch {
        devnet
            .advance(params.genesis_ms + u64::from(layer) * params.layer_duration_ms + 100)
            .expect("advance");
        for (_, vote) in voter.pass(std::slice::from_ref(&ident)).await {
            vote.expect("ballot");
        }
    }
    devnet
        .advance(clock.epoch_end(2).expect("epoch 2 end"))
        .expect("advance");
    let expected: u64 = bridge
        .rewards_of(&coinbase, 0)
        .expect("rewards")
        .iter()
        .map(|r| r.total)
        .sum();
    assert!(expected > 0);
    let r = e.get(&uri, &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["rewards_total"].as_u64(), Some(expected), "{}", r.text);
    let r = e
        .get(&format!("/api/v1/node/rewards?coinbase={coinbase_text}"), &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["total"].as_u64(), Some(expected));
    let first = &r.body["rewards"][0];
    assert_eq!(first["smesher"], smesher);
    let layer = first["layer"].as_u64().expect("layer");
    let r = e
        .get(&format!("/api/v1/node/layers/{layer}/rewards"), &viewer)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["subsidy"].as_u64().is_some_and(|s| s > 0), "{}", r.text);
    assert_eq!(r.body["credits"][0]["coinbase"], coinbase_text);
    let r = e
        .get(&format!("/api/v1/node/accounts/{coinbase_text}"), &viewer)
        .await;
    assert_eq!(r.body["balance"].as_u64(), Some(expected), "{}", r.text);
}
