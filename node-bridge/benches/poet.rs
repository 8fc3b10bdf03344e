//! The embedded PoET's costs, as a table: sequential-work leaves/s on one core (label depth 400,
//! the spec's value, and 100), the share of a core a paced PoET takes, and proof generation and
//! verification for a devnet round. `cargo bench -p node-bridge --bench poet` (about 30 s).
//! Options after `--`: `--secs S` per rate measurement (default 3), `--leaves N` for the round
//! (default 50,000: 1,000 leaves/s over the devnet's 50 s round).

use std::time::Instant;

use node_bridge::poet::proof::PoetProof;
use node_bridge::poet::work::Work;
use node_bridge::poet::{LABEL_DEPTH, T};

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args().skip_while(|a| a != name);
    it.next()?;
    it.next()
}

fn rate(depth: u32, secs: f64) -> f64 {
    let mut work = Work::with_depth([0x11; 32], depth);
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < secs {
        work.run(256);
    }
    work.leaf_count() as f64 / t.elapsed().as_secs_f64()
}

fn main() -> Result<(), String> {
    let secs: f64 = arg("--secs").map_or(Ok(3.0), |s| s.parse().map_err(|e| format!("--secs: {e}")))?;
    let leaves: u64 =
        arg("--leaves").map_or(Ok(50_000), |s| s.parse().map_err(|e| format!("--leaves: {e}")))?;

    println!("| measurement | value |");
    println!("|---|---|");
    let r400 = rate(LABEL_DEPTH, secs);
    println!("| leaves/s, depth {LABEL_DEPTH}, one core | {r400:.0} |");
    let r100 = rate(100, secs);
    println!("| leaves/s, depth 100, one core | {r100:.0} |");
    // spec/devnet.md §6.3: four PoETs paced at 1,000 + 800 + 1,200 + 50 leaves/s.
    let paced = 1_000.0 + 800.0 + 1_200.0 + 50.0;
    println!(
        "| one core's share for the four devnet PoETs ({paced:.0} leaves/s), depth {LABEL_DEPTH} | {:.1} % |",
        100.0 * paced / r400
    );

    let statement = [0x22; 32];
    let mut work = Work::new(statement);
    let t = Instant::now();
    work.run(leaves);
    let run_s = t.elapsed().as_secs_f64();
    println!("| {leaves} leaves unpaced, depth {LABEL_DEPTH} | {run_s:.2} s |");
    let t = Instant::now();
    let proof = PoetProof::generate(&work, T).map_err(|e| e.to_string())?;
    println!(
        "| proof generation, {leaves} leaves | {:.1} ms |",
        t.elapsed().as_secs_f64() * 1e3
    );
    let bytes = proof.encode().len();
    println!(
        "| proof size | {bytes} bytes ({} proof nodes) |",
        proof.proof_nodes.len()
    );
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        proof.verify(&statement, T).map_err(|e| e.to_string())?;
    }
    println!(
        "| proof verification (T = {T}) | {:.2} ms |",
        t.elapsed().as_secs_f64() * 1e3 / f64::from(reps)
    );
    Ok(())
}
