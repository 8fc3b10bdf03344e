//! End-to-end tests of `smeshfleet post ...`: the real binary as a child process, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("spawn smeshfleet")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> serde_json::Value {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {s}\nstderr: {}", stderr(o)))
}

/// Every file of a directory with its bytes, to compare directories whole.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read vector dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

const NODE: &str = "8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924";
const ATX: &str = "66ec687158c86167efec0fcad4b9a6f3e98db07cc065a595a5b979f8a20dc7e2";
const CHALLENGE: &str = "68656c6c6f20776f726c642c206368616c6c656e6765206d6521212121212121";
const EASY: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn init_args<'a>(dir: &'a str, units: &'a str, lpu: &'a str, mfs: &'a str, n: &'a str) -> Vec<&'a str> {
    vec![
        "post",
        "init",
        "--datadir",
        dir,
        "--node-id",
        NODE,
        "--commitment-atx-id",
        ATX,
        "--num-units",
        units,
        "--labels-per-unit",
        lpu,
        "--max-file-size",
        mfs,
        "--scrypt-n",
        n,
    ]
}

#[test]
fn init_reproduces_the_reference_data_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let d = dir.to_str().expect("utf8");
    let mut args = init_args(d, "4", "1024", "16384", "8192");
    args.push("--json");
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let j = json_of(&o);
    assert_eq!(j["ok"], true);
    assert_eq!(j["nonce"], 3270);
    let reference = vectors().join("init_small_pairA");
    for k in 0..4 {
        let name = format!("postdata_{k}.bin");
        let ours = std::fs::read(dir.join(&name)).expect("our file");
        let theirs = std::fs::read(reference.join(&name)).expect("reference file");
        assert!(ours == theirs, "{name} differs from the reference");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("postdata_metadata.json")).expect("metadata"))
            .expect("json");
    assert_eq!(meta["Nonce"], 3270);
    assert_eq!(meta["NonceValue"], "00013298e7375f41d5aeb3141b265cef");
}

/// Start an init, SIGKILL it at random moments, restart it until it finishes; the result must
/// equal an uninterrupted run byte for byte.
#[test]
fn init_killed_at_random_points_resumes_to_identical_files() {
    let seed: u64 = std::env::var("SMESHFLEET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (set SMESHFLEET_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    // N = 512 keeps labels cheap (~0.07 ms on one AVX2 thread) while a one-thread run still lasts
    // about 2.5 s here, far longer than the longest sleep before the first kill (0.4 s).
    let (units, lpu, mfs, n) = ("4", "9000", "40000", "512");
    let whole = tmp.path().join("whole");
    let o = run(&init_args(whole.to_str().expect("utf8"), units, lpu, mfs, n));
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let killed = tmp.path().join("killed");
    let kd = killed.to_str().expect("utf8").to_string();
    let mut kills = 0;
    for _ in 0..40 {
        let mut child = Command::new(BIN)
            .args(init_args(&kd, units, lpu, mfs, n))
            .arg("--threads")
            .arg("1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        match child.try_wait().expect("wait") {
            Some(status) => {
                assert!(status.success(), "init failed after {kills} kills");
                break;
            }
            None => {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                kills += 1;
            }
        }
    }
    // Finish whatever is left.
    let o = run(&init_args(&kd, units, lpu, mfs, n));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        kills > 0,
        "the run was never interrupted; the test proved nothing"
    );
    assert_eq!(
        snapshot(&killed),
        snapshot(&whole),
        "resumed data differs after {kills} kills (seed {seed})"
    );
}

#[test]
fn file_subsets_merge_into_the_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (units, lpu, mfs, n) = ("4", "512", "2048", "16");
    let whole = tmp.path().join("whole");
    assert_eq!(
        code(&run(&init_args(
            whole.to_str().expect("utf8"),
            units,
            lpu,
            mfs,
            n
        ))),
        0
    );
    let parts = tmp.path().join("parts");
    let pd = parts.to_str().expect("utf8");
    // 2048 labels of 128 per file: 16 files. The upper half first, then the lower half, then the
    // middle again (a no-op): the nonce of each subset is merged into the metadata.
    for (from, to) in [("8", "15"), ("0", "7"), ("5", "9")] {
        let mut a = init_args(pd, units, lpu, mfs, n);
        a.extend(["--from-file", from, "--to-file", to]);
        let o = run(&a);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    assert_eq!(snapshot(&parts), snapshot(&whole));
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let d = dir.to_str().expect("utf8");

    // Malformed hex: nothing is created.
    let mut a = init_args(d, "2", "256", "1024", "16");
    a[4] = "xyz";
    let o = run(&a);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--node-id"), "{}", stderr(&o));
    assert!(!dir.exists());

    // A real directory, then a request that disagrees with its metadata.
    assert_eq!(code(&run(&init_args(d, "2", "256", "1024", "16"))), 0);
    let before = snapshot(&dir);
    for (units, lpu, mfs) in [("3", "256", "1024"), ("2", "512", "1024"), ("2", "256", "2048")] {
        let o = run(&init_args(d, units, lpu, mfs, "16"));
        assert_eq!(code(&o), 2, "units {units} lpu {lpu} mfs {mfs}: {}", stderr(&o));
        assert_eq!(snapshot(&dir), before, "a refused init changed files");
    }
    let mut other_atx = init_args(d, "2", "256", "1024", "16");
    other_atx[6] = EASY;
    let o = run(&other_atx);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).to_lowercase().contains("commitment"), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before);

    // Other commands on a directory that does not exist.
    let missing = tmp.path().join("missing");
    let m = missing.to_str().expect("utf8");
    let o = run(&["post", "prove", "--datadir", m, "--challenge", CHALLENGE]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = run(&["post", "check", "--datadir", m]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = run(&[
        "post",
        "prove",
        "--datadir",
        d,
        "--challenge",
        CHALLENGE,
        "--nonces",
        "20",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!missing.exists());
}

#[test]
fn prove_then_verify_round_trip_and_tampering() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let d = dir.to_str().expect("utf8");
    assert_eq!(code(&run(&init_args(d, "2", "512", "4096", "16"))), 0);
    let proof = tmp.path().join("proof.json");
    let p = proof.to_str().expect("utf8");
    let o = run(&[
        "post",
        "prove",
        "--datadir",
        d,
        "--challenge",
        CHALLENGE,
        "--k1",
        "8",
        "--k2",
        "12",
        "--pow-difficulty",
        EASY,
        "--nonces",
        "16",
        "--randomx",
        "light",
        "--threads",
        "1",
        "--out",
        p,
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let verify = |proof: &str, extra: &[&str]| {
        let mut a = vec![
            "post",
            "verify",
            "--datadir",
            d,
            "--proof",
            proof,
            "--challenge",
            CHALLENGE,
            "--k1",
            "8",
            "--k2",
            "12",
            "--pow-difficulty",
            EASY,
            "--scrypt-n",
            "16",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = verify(p, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // A different nonce makes it invalid: exit 1 and a reason.
    let mut pj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).expect("proof")).expect("json");
    pj["nonce"] = serde_json::json!(pj["nonce"].as_u64().expect("nonce") ^ 1);
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, pj.to_string()).expect("write");
    let o = verify(bad.to_str().expect("utf8"), &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));

    // Indices of the wrong length are bad input: exit 2.
    pj["indices"] = serde_json::json!("AAAA");
    std::fs::write(&bad, pj.to_string()).expect("write");
    let o = verify(bad.to_str().expect("utf8"), &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));

    // Not JSON at all: exit 2.
    std::fs::write(&bad, "nope").expect("write");
    assert_eq!(code(&verify(bad.to_str().expect("utf8"), &[])), 2);
}

#[test]
fn verify_accepts_the_reference_proof_and_rejects_tampered_ones() {
    let v = vectors();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    copy_dir(&v.join("init_small_pairA"), &dir);
    let d = dir.to_str().expect("utf8");
    let proof_file = tmp.path().join("proof.json");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v.join("proof_small_pairA.json")).expect("vector"))
            .expect("json");
    std::fs::write(&proof_file, reference["proof"].to_string()).expect("write");
    let verify = |proof: &Path, extra: &[&str]| {
        let mut a = vec![
            "post",
            "verify",
            "--datadir",
            d,
            "--proof",
            proof.to_str().expect("utf8"),
            "--challenge",
            CHALLENGE,
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let o = verify(&proof_file, &["--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_of(&o)["valid"], true);
    assert_eq!(code(&verify(&proof_file, &["--k3", "1", "--seed", "00"])), 0);

    for name in ["index_bitflip", "pow_plus1", "nonce_plus1"] {
        let f = v.join(format!("proof_corrupted_{name}.json"));
        let o = verify(&f, &[]);
        assert_eq!(code(&o), 1, "{name} should be invalid: {}", stderr(&o));
    }
    for name in ["indices_swapped_0_1", "index_duplicated"] {
        let f = v.join(format!("proof_mutated_still_valid_{name}.json"));
        assert_eq!(code(&verify(&f, &[])), 0, "{name}: the reference accepts it");
        if name == "index_duplicated" {
            assert_eq!(
                code(&verify(&f, &["--strict"])),
                1,
                "{name}: strict mode rejects it"
            );
        }
    }
}

#[test]
fn check_reports_each_corrupted_label() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    copy_dir(&vectors().join("init_small_pairA"), &dir);
    let d = dir.to_str().expect("utf8");
    let o = run(&["post", "check", "--datadir", d, "--fraction", "1", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let f = dir.join("postdata_2.bin");
    let mut bytes = std::fs::read(&f).expect("read");
    bytes[16 * 100 + 3] ^= 0xff;
    std::fs::write(&f, &bytes).expect("write");
    let o = run(&["post", "check", "--datadir", d, "--fraction", "1", "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let j = json_of(&o);
    let bad = j["mismatches"].as_array().expect("mismatches");
    assert_eq!(bad.len(), 1, "{j}");
    assert_eq!(bad[0]["index"], 2 * 1024 + 100);
    assert_eq!(bad[0]["offset"], 1600);
    assert_eq!(bad[0]["file_index"], 2);

    let o = run(&["post", "check", "--datadir", d, "--fraction", "0"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn sha_of_reference_files_is_what_the_vector_says() {
    // Guards the other tests: the copied reference directory is the one the vectors describe.
    let v = vectors();
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v.join("init_small_pairA.json")).expect("vector"))
            .expect("json");
    for k in 0..4 {
        let name = format!("postdata_{k}.bin");
        let data = std::fs::read(v.join("init_small_pairA").join(&name)).expect("file");
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            spec["files"][&name]["sha256"].as_str().expect("sha")
        );
    }
}
