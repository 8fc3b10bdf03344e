//! The bodies of `smeshfleet post init|prove|verify|check`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use post::backend::CpuBackend;
use post::check::{check_data, CheckError, CheckProgress, NonceCheck};
use post::initialize::{initialize, InitError, InitOptions, InitPhase, InitProgress, InitState};
use post::metadata::PostMetadata;
use post::pow::randomx::{RandomXMode, RandomXOptions, RandomXPow};
use post::proof::{InitConfig, Proof, ProofConfig, ProofMetadata};
use post::prove::{generate_proof, ProveError, ProveOptions, ProveProgress};
use post::verify::{verify, Mode, VerifyError, VerifyOptions};
use serde_json::json;

use super::{
    bar, emit_json, input, ok_json, parse_hex32, runtime, stop_on_signals, write_atomic, CheckArgs,
    CmdResult, InitArgs, PostCommand, ProveArgs, RandomXModeArg, VerifyArgs,
};

pub fn run(cmd: PostCommand) -> CmdResult {
    match cmd {
        PostCommand::Init(a) => init(a),
        PostCommand::Prove(a) => prove(a),
        PostCommand::Verify(a) => verify_cmd(a),
        PostCommand::Check(a) => check(a),
        PostCommand::Bench(a) => super::bench::bench(a),
    }
}

fn require_dir(json: bool, dir: &Path) -> Result<(), crate::cli::CliError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(input(
            json,
            anyhow!("data directory {} does not exist", dir.display()),
        ))
    }
}

/// Errors of the caller's making (exit 2, nothing changed) versus failures of the work (exit 3).
fn init_error_is_input(e: &InitError) -> bool {
    use InitError::*;
    matches!(
        e,
        ZeroUnits
            | ZeroBatch
            | ScryptN(_)
            | Layout(_)
            | Vrf(_)
            | FileRange { .. }
            | Metadata(_)
            | MetadataMismatch { .. }
            | GrowingUnits { .. }
            | MissingMetadata { .. }
            | NonceValueMismatch { .. }
            | StoredNonceInvalid { .. }
            | ExistingDataMismatch { .. }
            | CreateDir { .. }
    )
}

fn init(a: InitArgs) -> CmdResult {
    let json = a.common.json;
    let started = Instant::now();
    let node_id = parse_hex32("node-id", &a.node_id).map_err(|e| input(json, e))?;
    let atx = parse_hex32("commitment-atx-id", &a.commitment_atx_id).map_err(|e| input(json, e))?;
    let scrypt_n = post::scrypt::validate_n(a.scrypt_n).map_err(|e| input(json, e))?;
    let mut opts = InitOptions::new(node_id, atx, a.num_units, a.labels_per_unit, a.max_file_size);
    opts.scrypt_n = scrypt_n;
    opts.from_file = a.from_file;
    opts.to_file = a.to_file;
    let backend = CpuBackend::new(a.threads).map_err(|e| runtime(json, e))?;
    let stop = stop_on_signals().map_err(|e| runtime(json, e))?;
    let pb = bar(!json, 0, "labels", "init");
    let progress = |p: InitProgress| match p {
        InitProgress::Started {
            labels_done,
            labels_total,
            ..
        } => {
            pb.set_length(labels_total);
            pb.set_position(labels_done);
        }
        InitProgress::Labels {
            labels_done,
            labels_total,
            ..
        } => {
            pb.set_length(labels_total);
            pb.set_position(labels_done);
        }
        InitProgress::Phase(InitPhase::SearchingPastEnd) => {
            pb.set_message("no VRF nonce in the data; searching past the end");
        }
        InitProgress::Phase(InitPhase::Verifying) => pb.set_message("checking existing data"),
        InitProgress::Phase(InitPhase::Computing) => pb.set_message("init"),
        InitProgress::Truncated(t) => {
            pb.println(format!(
                "{}: truncated from {} to {} bytes ({:?})",
                t.path.display(),
                t.from_bytes,
                t.to_bytes,
                t.reason
            ));
        }
        InitProgress::Deleted { path, .. } => {
            pb.println(format!("{}: deleted (beyond the data)", path.display()))
        }
        _ => {}
    };
    let result = initialize(&a.datadir, &opts, &backend, &progress, &stop);
    pb.finish_and_clear();
    let out = result.map_err(|e| {
        if init_error_is_input(&e) {
            input(json, e)
        } else {
            runtime(json, e)
        }
    })?;
    let state = match out.state {
        InitState::Complete => "complete",
        InitState::RangeComplete => "range_complete",
        InitState::Stopped => "stopped",
    };
    let md = &out.metadata;
    if json {
        emit_json(
            true,
            ok_json(
                started,
                json!({
                    "datadir": a.datadir,
                    "state": state,
                    "num_labels": md.num_labels(),
                    "labels_written": out.labels_written,
                    "labels_searched_past_end": out.labels_searched,
                    "nonce": md.nonce,
                    "nonce_value": md.nonce_value.map(hex::encode),
                    "truncated_files": out.truncations.len(),
                    "backend": post::backend::LabelBackend::name(&backend),
                }),
            ),
        );
    } else {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{state}: {} labels written in {secs:.1} s ({:.0} labels/s) on {}; data has {} labels in {}",
            out.labels_written,
            out.labels_written as f64 / secs.max(1e-9),
            post::backend::LabelBackend::name(&backend),
            md.num_labels(),
            a.datadir.display()
        );
        match md.nonce {
            Some(n) => println!("VRF nonce: {n}"),
            None => println!("VRF nonce: not found yet (initialize the remaining files)"),
        }
    }
    Ok(if out.state == InitState::Stopped {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn prove_error_is_input(e: &ProveError) -> bool {
    use ProveError::*;
    matches!(
        e,
        MissingMetadata { .. }
            | Metadata(_)
            | Layout(_)
            | MissingFile { .. }
            | WrongFileSize { .. }
            | InvalidNonces(_)
            | UnalignedNonces(_)
            | InvalidK2(_)
            | Difficulty(_)
    )
}

fn randomx_mode(m: RandomXModeArg) -> RandomXMode {
    match m {
        RandomXModeArg::Light => RandomXMode::Light,
        RandomXModeArg::Fast => RandomXMode::Fast,
    }
}

fn prove(a: ProveArgs) -> CmdResult {
    let json = a.common.json;
    let started = Instant::now();
    require_dir(json, &a.datadir)?;
    let challenge = parse_hex32("challenge", &a.challenge).map_err(|e| input(json, e))?;
    let pow_difficulty = parse_hex32("pow-difficulty", &a.pow_difficulty).map_err(|e| input(json, e))?;
    if a.nonces < 16 || !a.nonces.is_multiple_of(16) || a.nonces > post::prove::MAX_NONCES {
        return Err(input(json, ProveError::InvalidNonces(a.nonces)));
    }
    // Check the data before paying for RandomX (the fast dataset takes a minute to build).
    post::prove::PostData::open(&a.datadir).map_err(|e| {
        if prove_error_is_input(&e) {
            input(json, e)
        } else {
            runtime(json, e)
        }
    })?;
    let cfg = ProofConfig {
        k1: a.k1,
        k2: a.k2,
        pow_difficulty,
    };
    let opts = ProveOptions {
        nonces: a.nonces,
        threads: a.threads,
    };
    let stop = stop_on_signals().map_err(|e| runtime(json, e))?;
    let spinner = bar(!json, 0, "bytes", "randomx: preparing");
    let pow = RandomXPow::with_options(RandomXOptions {
        mode: randomx_mode(a.randomx),
        threads: a.threads,
        large_pages: true,
    })
    .map_err(|e| runtime(json, e))?;
    let progress = |p: ProveProgress| match p {
        ProveProgress::K2Pow {
            pass,
            nonce_group,
            done,
            total,
        } => {
            spinner.set_message(format!("pass {pass}: k2pow group {nonce_group} ({done}/{total})"));
        }
        ProveProgress::Scan {
            pass,
            bytes_done,
            bytes_total,
            nonces,
        } => {
            spinner.set_message(format!("pass {pass}: nonces {}..{}", nonces.0, nonces.1));
            spinner.set_length(bytes_total);
            spinner.set_position(bytes_done);
        }
    };
    let result = generate_proof(&a.datadir, &challenge, &cfg, &opts, &pow, &progress, &stop);
    spinner.finish_and_clear();
    let proof = result.map_err(|e| {
        if prove_error_is_input(&e) {
            input(json, e)
        } else {
            runtime(json, e)
        }
    })?;
    let proof_json = proof.to_json();
    if let Some(out) = &a.out {
        write_atomic(out, proof_json.as_bytes()).map_err(|e| runtime(json, e))?;
    }
    if json {
        let pv: serde_json::Value = serde_json::from_str(&proof_json).map_err(|e| runtime(json, e))?;
        emit_json(true, ok_json(started, json!({"proof": pv, "out": a.out})));
    } else if a.out.is_none() {
        println!("{proof_json}");
    } else {
        eprintln!(
            "proof (nonce {}, pow {}) written to {} in {:.1} s",
            proof.nonce,
            proof.pow,
            a.out
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(a: VerifyArgs) -> CmdResult {
    let json = a.common.json;
    let started = Instant::now();
    require_dir(json, &a.datadir)?;
    let challenge = parse_hex32("challenge", &a.challenge).map_err(|e| input(json, e))?;
    let pow_difficulty = parse_hex32("pow-difficulty", &a.pow_difficulty).map_err(|e| input(json, e))?;
    let scrypt_n = post::scrypt::validate_n(a.scrypt_n).map_err(|e| input(json, e))?;
    let md = PostMetadata::load(&a.datadir)
        .map_err(|e| input(json, e))?
        .ok_or_else(|| {
            input(
                json,
                anyhow!("{} has no postdata_metadata.json", a.datadir.display()),
            )
        })?;
    let text = std::fs::read_to_string(&a.proof)
        .map_err(|e| input(json, anyhow!("cannot read proof file {}: {e}", a.proof.display())))?;
    let proof = Proof::from_json(&text).map_err(|e| {
        input(
            json,
            anyhow!(
                "{} is not a proof ({{nonce, indices, pow}}): {e}",
                a.proof.display()
            ),
        )
    })?;
    let mode = match a.k3 {
        None => Mode::All,
        Some(k3) if k3 >= a.k2 => Mode::All,
        Some(0) => return Err(input(json, anyhow!("--k3 must be at least 1"))),
        Some(k3) => {
            let seed = match &a.seed {
                Some(s) => hex::decode(s.trim()).map_err(|e| input(json, anyhow!("--seed: not hex: {e}")))?,
                None => rand::random::<[u8; 32]>().to_vec(),
            };
            Mode::Subset {
                k3: k3 as usize,
                seed,
            }
        }
    };
    let cfg = ProofConfig {
        k1: a.k1,
        k2: a.k2,
        pow_difficulty,
    };
    let init_cfg = InitConfig {
        min_num_units: 1,
        max_num_units: u32::MAX,
        labels_per_unit: md.labels_per_unit,
        scrypt_n,
    };
    let meta = ProofMetadata::from_post_metadata(&md, challenge);
    let pow = RandomXPow::new(RandomXMode::Light).map_err(|e| runtime(json, e))?;
    let options = VerifyOptions {
        strict: a.strict,
        threads: 0,
    };
    let result = verify(&proof, &meta, &cfg, &init_cfg, &mode, &options, &pow);
    let mode_str = match &mode {
        Mode::All => "all".to_string(),
        Mode::One { index } => format!("one({index})"),
        Mode::Subset { k3, seed } => format!("subset(k3={k3}, seed={})", hex::encode(seed)),
    };
    match result {
        Ok(()) => {
            if json {
                emit_json(
                    true,
                    ok_json(
                        started,
                        json!({"valid": true, "mode": mode_str, "strict": a.strict}),
                    ),
                );
            } else {
                println!(
                    "valid proof (mode {mode_str}{})",
                    if a.strict { ", strict" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (VerifyError::InvalidIndicesLen { .. } | VerifyError::InvalidScryptN(_))) => {
            Err(input(json, e))
        }
        Err(e) => {
            if json {
                emit_json(
                    true,
                    ok_json(
                        started,
                        json!({"valid": false, "mode": mode_str, "strict": a.strict, "reason": e.to_string()}),
                    ),
                );
            } else {
                println!("invalid proof: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn check_error_is_input(e: &CheckError) -> bool {
    use CheckError::*;
    matches!(
        e,
        InvalidFraction(_) | ScryptN(_) | NoMetadata { .. } | Metadata(_) | Layout(_) | Vrf(_)
    )
}

fn check(a: CheckArgs) -> CmdResult {
    let json = a.common.json;
    let started = Instant::now();
    require_dir(json, &a.datadir)?;
    let scrypt_n = post::scrypt::validate_n(a.scrypt_n).map_err(|e| input(json, e))?;
    let pb = bar(!json, 0, "labels", "check");
    let progress = |p: CheckProgress| match p {
        CheckProgress::Started { labels_planned, .. } => pb.set_length(labels_planned),
        CheckProgress::Labels { checked, planned } => {
            pb.set_length(planned);
            pb.set_position(checked);
        }
        CheckProgress::Mismatch(m) => pb.println(format!("bad label: {m}")),
        CheckProgress::Issue(i) => pb.println(format!("bad file: {i}")),
        _ => {}
    };
    let result = check_data(&a.datadir, a.fraction, scrypt_n, a.threads, &progress, None);
    pb.finish_and_clear();
    let r = result.map_err(|e| {
        if check_error_is_input(&e) {
            input(json, e)
        } else {
            runtime(json, e)
        }
    })?;
    let nonce = match &r.nonce {
        NonceCheck::Absent => json!({"status": "absent"}),
        NonceCheck::Valid { index, .. } => json!({"status": "valid", "index": index}),
        NonceCheck::NotBelowThreshold {
            index,
            label32,
            threshold,
        } => json!({
            "status": "not_below_threshold", "index": index,
            "label32": hex::encode(label32), "threshold": hex::encode(threshold)}),
        NonceCheck::ValueMismatch {
            index,
            stored,
            computed,
        } => json!({
            "status": "value_mismatch", "index": index,
            "stored": hex::encode(stored), "computed": hex::encode(computed)}),
    };
    let nonce_bad = matches!(
        r.nonce,
        NonceCheck::NotBelowThreshold { .. } | NonceCheck::ValueMismatch { .. }
    );
    let ok = r.data_ok() && !nonce_bad;
    if json {
        let mismatches: Vec<_> = r
            .mismatches
            .iter()
            .map(|m| {
                json!({"path": m.path, "file_index": m.file, "offset": m.offset, "index": m.index,
                       "expected": hex::encode(m.expected), "found": hex::encode(m.found)})
            })
            .collect();
        let issues: Vec<String> = r.file_issues.iter().map(ToString::to_string).collect();
        emit_json(
            true,
            ok_json(
                started,
                json!({
                    "data_ok": ok,
                    "fraction": r.fraction,
                    "seed": r.seed,
                    "files_checked": r.files_checked,
                    "labels_checked": r.labels_checked,
                    "mismatches_total": r.mismatches_total,
                    "mismatches": mismatches,
                    "file_issues": issues,
                    "nonce": nonce,
                }),
            ),
        );
    } else {
        for m in &r.mismatches {
            println!("bad label: {m}");
        }
        for i in &r.file_issues {
            println!("bad file: {i}");
        }
        println!(
            "{}: {} labels checked in {} files ({:.4}% sampled, seed {}), {} bad; VRF nonce {}",
            if ok { "ok" } else { "BAD DATA" },
            r.labels_checked,
            r.files_checked,
            r.fraction * 100.0,
            r.seed,
            r.mismatches_total,
            nonce["status"].as_str().unwrap_or("?")
        );
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
