//! Devnet persistence costs, as a table: `save()` and `open()` of a devnet after `--epochs`
//! epochs (default 20) of the §6.3 devnet's PoET pacing (1,000 and 800 leaves/s, depth 400)
//! with four identities registering with both PoETs every round and a transaction per epoch
//! (no ATXs: `open` parses those without crypto, a few µs each).
//! `cargo bench -p node-bridge --features testkit --bench persist` (about a minute).

use std::time::Instant;

use ed25519_dalek::SigningKey;
use node_bridge::bridge::NodeBridge;
use node_bridge::devnet::{Devnet, DevnetConfig};
use node_bridge::poet::Registration;
use node_bridge::vm::tx::wallet_self_spawn;
use node_bridge::vm::wallet_address;

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args().skip_while(|a| a != name);
    it.next()?;
    it.next()
}

fn main() -> Result<(), String> {
    let epochs: u64 = arg("--epochs").map_or(Ok(20), |s| s.parse().map_err(|e| format!("--epochs: {e}")))?;
    let faucet_key = SigningKey::from_bytes(&[0xfa; 32]);
    let faucet = wallet_address(&faucet_key.verifying_key().to_bytes());
    let cfg = DevnetConfig::devnet(0, faucet);
    let dir = std::env::temp_dir().join(format!("smeshfleet-persist-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pow = node_bridge::testkit::randomx().clone();
    let dn = Devnet::open_with_pow_verifier(cfg.clone(), pow.clone(), &dir).map_err(|e| e.to_string())?;
    let g = dn.genesis().map_err(|e| e.to_string())?;
    let keys: Vec<SigningKey> = (1..=4u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let t = Instant::now();
    for e in 0..epochs {
        let start = e * 60_000;
        dn.advance(start + 1_000).map_err(|e| e.to_string())?;
        for (i, k) in keys.iter().enumerate() {
            let challenge = [e as u8 ^ i as u8; 32];
            for p in dn.poets().map_err(|e| e.to_string())? {
                let reg = Registration::signed(k, &g.genesis_id, challenge, None);
                dn.poet_register(&p.id, &reg).map_err(|e| e.to_string())?;
            }
        }
        let key = SigningKey::from_bytes(&[0x10 + e as u8; 32]);
        dn.submit_tx(&wallet_self_spawn(&key, 0, 1, &g.genesis_id))
            .map_err(|e| e.to_string())?;
        // Mid-epoch: both PoETs' rounds running.
        dn.advance(start + 45_000).map_err(|e| e.to_string())?;
    }
    let drive_s = t.elapsed().as_secs_f64();
    println!(
        "| measurement ({epochs} epochs, retain {}) | value |",
        cfg.retain_epochs
    );
    println!("|---|---|");
    println!("| drive the devnet (PoET work included) | {drive_s:.1} s |");
    let n = 10;
    let t = Instant::now();
    for _ in 0..n {
        dn.save().map_err(|e| e.to_string())?;
    }
    println!(
        "| save() | {:.1} ms |",
        t.elapsed().as_secs_f64() * 1e3 / f64::from(n)
    );
    let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    println!(
        "| files | snapshot {} KB, journal {} B, ATX log {} B |",
        size("snapshot.bin") / 1024,
        size("journal.bin"),
        size("atxs.bin")
    );
    // A journal after the snapshot: a registration round and 5 s of advances.
    dn.advance(epochs * 60_000 + 100).map_err(|e| e.to_string())?;
    for ms in (0..5_000).step_by(100) {
        dn.advance(epochs * 60_000 + 100 + ms)
            .map_err(|e| e.to_string())?;
    }
    drop(dn);
    for _ in 0..3 {
        let t = Instant::now();
        let dn = Devnet::open_with_pow_verifier(cfg.clone(), pow.clone(), &dir).map_err(|e| e.to_string())?;
        println!(
            "| open() (snapshot + {} B journal; recomputes the running rounds' leaves) | {:.0} ms |",
            size("journal.bin"),
            t.elapsed().as_secs_f64() * 1e3
        );
        drop(dn);
    }
    let dn = Devnet::open_with_pow_verifier(cfg.clone(), pow.clone(), &dir).map_err(|e| e.to_string())?;
    dn.advance(epochs * 60_000 + 38_000).map_err(|e| e.to_string())?;
    dn.save().map_err(|e| e.to_string())?;
    drop(dn);
    let t = Instant::now();
    let _dn = Devnet::open_with_pow_verifier(cfg, pow, &dir).map_err(|e| e.to_string())?;
    println!(
        "| open() with no PoET round running (snapshot only) | {:.0} ms |",
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
