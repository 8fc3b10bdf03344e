//! The initializer and the data checker against the reference data directory
//! (`shared/vectors/init_small_pairA`) and against uninterrupted runs of themselves.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use post::backend::{BackendError, CpuBackend, LabelBackend, LabelRequest, VrfCandidate};
use post::check::{check_data, CheckProgress, FileIssue, NonceCheck};
use post::data::{file_name, METADATA_FILE};
use post::difficulty::vrf_difficulty;
use post::initialize::{
    init_status, initialize, merge_nonce, merge_nonce_from, InitError, InitOptions, InitOutcome,
    InitProgress, InitState, TruncateReason,
};
use post::metadata::PostMetadata;
use post::scrypt::{commitment, label, label32};
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn vectors() -> PathBuf {
    PathBuf::from(VECTORS)
}

fn vector_json() -> Value {
    let text = std::fs::read(vectors().join("init_small_pairA.json")).expect("read init_small_pairA.json");
    serde_json::from_slice(&text).expect("parse init_small_pairA.json")
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn vector_opts(v: &Value) -> InitOptions {
    let i = &v["inputs"];
    let mut o = InitOptions::new(
        hex32(i["node_id"].as_str().expect("node_id")),
        hex32(i["commitment_atx_id"].as_str().expect("atx")),
        i["num_units"].as_u64().expect("units") as u32,
        i["labels_per_unit"].as_u64().expect("lpu"),
        i["max_file_size"].as_u64().expect("mfs"),
    );
    o.scrypt_n = i["scrypt"]["n"].as_u64().expect("n") as usize;
    o
}

/// Copy the files of `src` into `dst` (created), writable (the vectors are read-only).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        std::fs::write(&to, std::fs::read(e.path()).expect("read")).expect("write");
    }
}

/// Every file of a directory with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).expect("read"),
        );
    }
    out
}

fn cpu() -> CpuBackend {
    CpuBackend::new(2).expect("cpu backend")
}

fn run(dir: &Path, opts: &InitOptions) -> Result<InitOutcome, InitError> {
    initialize(dir, opts, &cpu(), &|_| {}, &AtomicBool::new(false))
}

/// N = 16, 2 units x 200 labels, 1024-byte files: 7 files of 64 labels, the last with 16.
fn small_opts(seed: u8) -> InitOptions {
    let mut o = InitOptions::new([seed; 32], [0xa5; 32], 2, 200, 1024);
    o.scrypt_n = 16;
    o.batch_size = 32;
    o
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A full, uninterrupted small run.
fn reference(opts: &InitOptions) -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let t = tmp();
    let out = run(t.path(), opts).expect("reference run");
    assert_eq!(out.state, InitState::Complete);
    let snap = snapshot(t.path());
    (t, snap)
}

#[test]
fn initialize_reproduces_reference_directory() {
    let v = vector_json();
    let opts = vector_opts(&v);
    let t = tmp();
    let dir = t.path().join("new/data");
    let events = RefCell::new(Vec::new());
    let out = initialize(
        &dir,
        &opts,
        &cpu(),
        &|e| events.borrow_mut().push(e),
        &AtomicBool::new(false),
    )
    .expect("initialize");
    assert_eq!(out.state, InitState::Complete);
    assert_eq!(out.labels_written, 4096);
    assert_eq!(out.labels_searched, 0);
    let nonce = out.nonce.expect("nonce");
    assert_eq!(nonce.index, v["vrf_nonce"].as_u64().expect("vrf_nonce"));
    assert_eq!(
        hex::encode(nonce.label32),
        v["vrf_nonce_label32"].as_str().expect("label32")
    );

    for (name, f) in v["files"].as_object().expect("files") {
        let ours = std::fs::read(dir.join(name)).expect("our file");
        let theirs = std::fs::read(vectors().join("init_small_pairA").join(name)).expect("vector file");
        assert_eq!(ours.len() as u64, f["size"].as_u64().expect("size"), "{name}");
        assert!(ours == theirs, "{name} differs from the reference");
        assert_eq!(
            hex::encode(Sha256::digest(&ours)),
            f["sha256"].as_str().expect("sha256"),
            "{name}"
        );
    }
    let md = std::fs::read_to_string(dir.join(METADATA_FILE)).expect("metadata");
    assert_eq!(md, v["metadata_postcli_format"].as_str().expect("go form"));
    let names: Vec<String> = snapshot(&dir).into_keys().collect();
    assert_eq!(
        names,
        [
            "postdata_0.bin",
            "postdata_1.bin",
            "postdata_2.bin",
            "postdata_3.bin",
            METADATA_FILE
        ]
    );

    // Progress: the totals, a final 4096/4096, the nonce.
    let events = events.into_inner();
    assert!(events.contains(&InitProgress::Started {
        labels_done: 0,
        labels_total: 4096,
        first_file: 0,
        last_file: 3
    }));
    let last_labels = events.iter().rev().find_map(|e| match e {
        InitProgress::Labels {
            labels_done,
            labels_total,
            ..
        } => Some((*labels_done, *labels_total)),
        _ => None,
    });
    assert_eq!(last_labels, Some((4096, 4096)));
    assert!(events
        .iter()
        .any(|e| matches!(e, InitProgress::NonceFound(c) if c.index == 3270)));

    let st = init_status(&dir).expect("status").expect("initialized");
    assert!(st.is_complete());
    assert_eq!(st.labels_present(), 4096);

    // A rerun has nothing to do and changes nothing.
    let before = snapshot(&dir);
    let again = run(&dir, &opts).expect("rerun");
    assert_eq!(again.state, InitState::Complete);
    assert_eq!(again.labels_written, 0);
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn metadata_of_both_writers_is_read_and_completed() {
    let v = vector_json();
    let opts = vector_opts(&v);
    let t = tmp();
    copy_dir(&vectors().join("init_small_pairA"), t.path());
    let go = PostMetadata::load(t.path()).expect("load").expect("present");
    assert_eq!(go.nonce, Some(3270));
    assert_eq!(go.last_position, None);
    assert_eq!(
        go.nonce_value.map(hex::encode).as_deref(),
        v["vrf_nonce_value16"].as_str()
    );
    assert_eq!(go.node_id, opts.node_id);

    // post-rs form: nulls, no NonceValue.
    let rs = v["metadata_post_rs_initialize_format"].as_str().expect("rs form");
    std::fs::write(t.path().join(METADATA_FILE), rs).expect("write rs form");
    let md = PostMetadata::load(t.path()).expect("load").expect("present");
    assert_eq!(md.nonce, Some(3270));
    assert_eq!(md.nonce_value, None);
    assert_eq!(md.last_position, None);
    assert_eq!(
        PostMetadata {
            nonce_value: None,
            ..go
        },
        md
    );
    let st = init_status(t.path()).expect("status").expect("initialized");
    assert!(st.is_complete());

    // The initializer recomputes the missing NonceValue and writes the Go form; no label is
    // recomputed for storage.
    let out = run(t.path(), &opts).expect("initialize over the rs form");
    assert_eq!(out.labels_written, 0);
    assert_eq!(out.state, InitState::Complete);
    let text = std::fs::read_to_string(t.path().join(METADATA_FILE)).expect("metadata");
    assert_eq!(text, v["metadata_postcli_format"].as_str().expect("go form"));
}

#[test]
fn init_status_of_nothing() {
    let t = tmp();
    assert!(init_status(t.path()).expect("status").is_none());
    assert!(init_status(&t.path().join("absent")).expect("status").is_none());
}

fn set_len(p: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(p).expect("open");
    f.set_len(len).expect("set_len");
}

#[test]
fn resumption_of_damaged_directories_is_byte_identical() {
    let opts = small_opts(1);
    let (full, want) = reference(&opts);
    assert_eq!(want.len(), 8, "7 data files and the metadata");

    type Damage = (&'static str, Box<dyn Fn(&Path)>, Vec<(u64, TruncateReason)>);
    let cases: Vec<Damage> = vec![
        (
            "partial last file",
            Box::new(|d: &Path| set_len(&d.join(file_name(6)), 5 * 16)),
            vec![],
        ),
        (
            "tail not a multiple of 16",
            Box::new(|d: &Path| set_len(&d.join(file_name(2)), 30 * 16 + 7)),
            vec![(2, TruncateReason::PartialLabel)],
        ),
        (
            "file longer than expected",
            Box::new(|d: &Path| {
                let p = d.join(file_name(3));
                let mut b = std::fs::read(&p).expect("read");
                b.extend_from_slice(&[0x5a; 100]);
                std::fs::write(&p, b).expect("write");
            }),
            vec![(3, TruncateReason::TooLong)],
        ),
        (
            "missing middle file",
            Box::new(|d: &Path| std::fs::remove_file(d.join(file_name(4))).expect("rm")),
            vec![],
        ),
        (
            "zeroed tail (size extended, data lost)",
            Box::new(|d: &Path| {
                let p = d.join(file_name(1));
                let mut b = std::fs::read(&p).expect("read");
                let n = b.len();
                b[n - 10 * 16..].fill(0);
                std::fs::write(&p, b).expect("write");
            }),
            vec![(1, TruncateReason::InvalidTail)],
        ),
        (
            "zeroed whole file",
            Box::new(|d: &Path| std::fs::write(d.join(file_name(4)), [0u8; 1024]).expect("write")),
            vec![(4, TruncateReason::InvalidTail)],
        ),
        (
            "surplus file",
            Box::new(|d: &Path| std::fs::write(d.join(file_name(9)), [1u8; 32]).expect("write")),
            vec![],
        ),
        (
            "all at once",
            Box::new(|d: &Path| {
                set_len(&d.join(file_name(6)), 3 * 16);
                set_len(&d.join(file_name(2)), 12 * 16 + 1);
                std::fs::remove_file(d.join(file_name(4))).expect("rm");
                std::fs::remove_file(d.join(file_name(0))).expect("rm");
                let p = d.join(file_name(5));
                let mut b = std::fs::read(&p).expect("read");
                b[40 * 16..].fill(0);
                std::fs::write(&p, b).expect("write");
            }),
            vec![
                (2, TruncateReason::PartialLabel),
                (5, TruncateReason::InvalidTail),
            ],
        ),
    ];
    for (what, damage, truncated) in cases {
        let t = tmp();
        copy_dir(full.path(), t.path());
        damage(t.path());
        let out = run(t.path(), &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(out.state, InitState::Complete, "{what}");
        assert_eq!(snapshot(t.path()), want, "{what}");
        let got: Vec<(u64, TruncateReason)> = out.truncations.iter().map(|t| (t.file, t.reason)).collect();
        assert_eq!(got, truncated, "{what}");
    }
}

#[test]
fn zeroed_tail_is_cut_back_to_the_last_good_label() {
    let opts = small_opts(1);
    let (full, want) = reference(&opts);
    let t = tmp();
    copy_dir(full.path(), t.path());
    let p = t.path().join(file_name(1));
    let mut b = std::fs::read(&p).expect("read");
    b[50 * 16..].fill(0);
    std::fs::write(&p, b).expect("write");
    let out = run(t.path(), &opts).expect("resume");
    assert_eq!(out.truncations.len(), 1);
    assert_eq!(out.truncations[0].reason, TruncateReason::InvalidTail);
    assert_eq!(
        (out.truncations[0].from_bytes, out.truncations[0].to_bytes),
        (1024, 50 * 16)
    );
    assert_eq!(out.labels_written, 14);
    assert_eq!(snapshot(t.path()), want);
}

#[test]
fn stop_flag_then_resume_is_byte_identical() {
    let opts = small_opts(2);
    let (_full, want) = reference(&opts);
    let t = tmp();
    let stop = AtomicBool::new(false);
    let out = initialize(
        t.path(),
        &opts,
        &cpu(),
        &|e| {
            if matches!(e, InitProgress::Labels { .. }) {
                stop.store(true, Ordering::SeqCst);
            }
        },
        &stop,
    )
    .expect("first run");
    assert_eq!(out.state, InitState::Stopped);
    assert!(
        out.labels_written > 0 && out.labels_written < 400,
        "{}",
        out.labels_written
    );
    let st = init_status(t.path())
        .expect("status")
        .expect("metadata written before computing");
    assert_eq!(st.labels_present(), out.labels_written);
    assert!(!st.data_complete());

    let out = run(t.path(), &opts).expect("resume");
    assert_eq!(out.state, InitState::Complete);
    assert_eq!(snapshot(t.path()), want);
}

/// A SIGKILL can land between the write of labels and the save of the nonce found in them; a
/// resume keeps written labels without rescanning them, so the nonce must already be recorded.
/// Simulated by a progress callback that panics at the first durable batch of every run (after
/// the labels are on disk): restarted until complete, the directory equals an uninterrupted run.
#[test]
fn interrupted_after_every_batch_keeps_the_nonce() {
    let opts = small_opts(2);
    let (_full, want) = reference(&opts);
    let md = PostMetadata::from_json(Path::new("m"), &want[METADATA_FILE]).expect("md");
    let nonce = md.nonce.expect("the reference has a nonce");
    assert!(
        nonce < 400,
        "the reference's nonce {nonce} lies past the data; pick a seed whose nonce is a stored label"
    );
    let t = tmp();
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs < 100, "no progress after {runs} runs");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            initialize(
                t.path(),
                &opts,
                &cpu(),
                &|e| {
                    if matches!(e, InitProgress::Labels { .. }) {
                        panic!("simulated kill after a durable batch");
                    }
                },
                &AtomicBool::new(false),
            )
        }));
        if let Ok(out) = r {
            assert_eq!(out.expect("run").state, InitState::Complete);
            break;
        }
    }
    assert!(runs > 5, "only {runs} runs: the kill never landed mid-data");
    assert_eq!(snapshot(t.path()), want);
}

#[test]
fn file_ranges_merge_into_the_whole() {
    let opts = small_opts(3);
    let (_full, want) = reference(&opts);
    let full_md = PostMetadata::from_json(Path::new("m"), &want[METADATA_FILE]).expect("md");
    let range = |from, to| InitOptions {
        from_file: Some(from),
        to_file: Some(to),
        ..opts.clone()
    };

    // Two machines, two directories.
    let (a, b) = (tmp(), tmp());
    let oa = run(a.path(), &range(0, 2)).expect("files 0..=2");
    let ob = run(b.path(), &range(3, 6)).expect("files 3..=6");
    assert_eq!(oa.state, InitState::RangeComplete);
    assert_eq!(ob.state, InitState::RangeComplete);
    assert_eq!(oa.labels_written, 3 * 64);
    assert_eq!(ob.labels_written, 400 - 3 * 64);
    let (na, nb) = (oa.nonce.expect("nonce in A"), ob.nonce.expect("nonce in B"));
    assert_ne!(
        na.index, nb.index,
        "choose a seed where both halves have a candidate"
    );
    assert_eq!(Some(na.better(nb).index), full_md.nonce);
    let mut names_a: Vec<String> = snapshot(a.path()).into_keys().collect();
    names_a.sort();
    assert_eq!(
        names_a,
        [
            "postdata_0.bin",
            "postdata_1.bin",
            "postdata_2.bin",
            METADATA_FILE
        ]
    );

    // Merge: copy B's files into A, then B's nonce.
    for (name, bytes) in snapshot(b.path()) {
        if name != METADATA_FILE {
            std::fs::write(a.path().join(name), bytes).expect("copy");
        }
    }
    let m = merge_nonce_from(a.path(), b.path(), opts.scrypt_n).expect("merge");
    assert_eq!(m.nonce.map(|c| c.index), full_md.nonce);
    assert_eq!(m.changed, full_md.nonce != Some(na.index));
    assert_eq!(snapshot(a.path()), want);
    let m = merge_nonce_from(a.path(), b.path(), opts.scrypt_n).expect("merge again");
    assert!(!m.changed);
    let out = run(a.path(), &opts).expect("whole after merge");
    assert_eq!((out.state, out.labels_written), (InitState::Complete, 0));
    assert_eq!(snapshot(a.path()), want);

    // One directory, several calls: the nonce is merged automatically.
    let c = tmp();
    assert_eq!(
        run(c.path(), &range(4, 6)).expect("4..=6").state,
        InitState::RangeComplete
    );
    assert_eq!(
        run(c.path(), &range(0, 1)).expect("0..=1").state,
        InitState::RangeComplete
    );
    assert_eq!(
        run(c.path(), &range(2, 3)).expect("2..=3").state,
        InitState::Complete
    );
    assert_eq!(snapshot(c.path()), want);

    // merge_nonce with a candidate: a worse one changes nothing, an invalid one is refused.
    let worse = if Some(na.index) == full_md.nonce { nb } else { na };
    let m = merge_nonce(a.path(), worse, opts.scrypt_n).expect("merge worse");
    assert!(!m.changed);
    let bogus = VrfCandidate {
        index: 1,
        label32: [0; 32],
    };
    assert!(matches!(
        merge_nonce(a.path(), bogus, opts.scrypt_n),
        Err(InitError::InvalidCandidate { index: 1, .. })
    ));
    assert_eq!(snapshot(a.path()), want);

    let bad = range(5, 7);
    assert!(matches!(
        run(tmp().path(), &bad),
        Err(InitError::FileRange {
            from: 5,
            to: 7,
            num_files: 7
        })
    ));
}

#[test]
fn mismatching_metadata_changes_nothing() {
    let opts = small_opts(4);
    let (full, want) = reference(&opts);
    let dir = full.path();
    let cases: Vec<(InitOptions, &str)> = vec![
        (
            InitOptions {
                node_id: [9; 32],
                ..opts.clone()
            },
            "NodeId",
        ),
        (
            InitOptions {
                commitment_atx_id: [9; 32],
                ..opts.clone()
            },
            "CommitmentAtxId",
        ),
        (
            InitOptions {
                labels_per_unit: 100,
                ..opts.clone()
            },
            "LabelsPerUnit",
        ),
        (
            InitOptions {
                max_file_size: 2048,
                ..opts.clone()
            },
            "MaxFileSize",
        ),
        (
            InitOptions {
                num_units: 3,
                ..opts.clone()
            },
            "NumUnits",
        ),
    ];
    for (o, field) in cases {
        let err = run(dir, &o).expect_err(field);
        let msg = err.to_string();
        assert!(msg.contains(field), "{msg}");
        match (&err, field) {
            (
                InitError::GrowingUnits {
                    stored, requested, ..
                },
                "NumUnits",
            ) => {
                assert_eq!((*stored, *requested), (2, 3));
            }
            (InitError::MetadataMismatch { field: f, .. }, _) => assert_eq!(*f, field),
            _ => panic!("{field}: unexpected error {err:?}"),
        }
        assert_eq!(snapshot(dir), want, "{field}: the directory changed");
    }

    // Another scrypt N: the stored NonceValue gives it away.
    let err = run(
        dir,
        &InitOptions {
            scrypt_n: 2,
            ..opts.clone()
        },
    )
    .expect_err("other N");
    assert!(matches!(err, InitError::NonceValueMismatch { .. }), "{err:?}");
    assert_eq!(snapshot(dir), want);

    // Without a stored nonce, the existing labels give it away.
    let t = tmp();
    copy_dir(dir, t.path());
    let mut md = PostMetadata::load(t.path()).expect("load").expect("md");
    md.nonce = None;
    md.nonce_value = None;
    md.save(t.path()).expect("save");
    set_len(&t.path().join(file_name(3)), 10 * 16);
    let before = snapshot(t.path());
    let err = run(
        t.path(),
        &InitOptions {
            scrypt_n: 2,
            ..opts.clone()
        },
    )
    .expect_err("other N");
    match &err {
        InitError::ExistingDataMismatch { file, index, .. } => assert_eq!((*file, *index), (0, 0)),
        _ => panic!("unexpected {err:?}"),
    }
    assert_eq!(snapshot(t.path()), before);

    // Labels present, metadata missing.
    std::fs::remove_file(t.path().join(METADATA_FILE)).expect("rm");
    let before = snapshot(t.path());
    let err = run(t.path(), &opts).expect_err("no metadata");
    assert!(matches!(err, InitError::MissingMetadata { .. }), "{err:?}");
    assert_eq!(snapshot(t.path()), before);
}

#[test]
fn shrinking_units_truncates_and_keeps_a_valid_nonce() {
    let opts = small_opts(5);
    let (full, _) = reference(&opts);
    let one = InitOptions {
        num_units: 1,
        ..opts.clone()
    };
    let (_fresh, fresh) = reference(&one);
    let out = run(full.path(), &one).expect("shrink");
    assert_eq!(out.state, InitState::Complete);
    assert_eq!(out.deleted.len(), 3, "files 4, 5, 6");
    assert_eq!(out.truncations.len(), 1, "file 3 cut to 200 - 192 labels");
    let got = snapshot(full.path());
    for (name, bytes) in &fresh {
        if name != METADATA_FILE {
            assert_eq!(got.get(name), Some(bytes), "{name}");
        }
    }
    assert_eq!(got.len(), fresh.len());
    let md = PostMetadata::load(full.path()).expect("load").expect("md");
    assert_eq!(md.num_units, 1);
    let nonce = md.nonce.expect("nonce kept");
    let l = label32(&one.commitment(), nonce, one.scrypt_n);
    assert!(l < vrf_difficulty(200).expect("t"));
}

/// N = 2, 2 units x 16 labels: node id 47851 (LE) has no label below the VRF threshold in the
/// data; the first qualifying index past the end is 41 (found by brute force, checked below).
fn search_opts() -> InitOptions {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&47851u64.to_le_bytes());
    let mut o = InitOptions::new(id, [7; 32], 2, 16, 1024);
    o.scrypt_n = 2;
    o.batch_size = 4;
    o
}

#[test]
fn nonce_search_past_the_end_and_its_resumption() {
    let opts = search_opts();
    let com = opts.commitment();
    let t32 = vrf_difficulty(32).expect("t");
    assert!(
        (0..32).all(|i| label32(&com, i, 2) >= t32),
        "the data must hold no candidate"
    );
    // Expected: the best candidate of the first batch of 4 (from 32) that holds one.
    let expect_from = |start: u64| {
        let mut b = start;
        loop {
            let c: Vec<VrfCandidate> = (b..b + 4)
                .map(|i| VrfCandidate {
                    index: i,
                    label32: label32(&com, i, 2),
                })
                .filter(|c| c.label32 < t32)
                .collect();
            if let Some(best) = c.into_iter().reduce(VrfCandidate::better) {
                return (best, b);
            }
            b += 4;
        }
    };
    let (want, want_batch) = expect_from(32);
    assert_eq!(want_batch, 40);

    let t = tmp();
    let out = run(t.path(), &opts).expect("initialize");
    assert_eq!(out.state, InitState::Complete);
    assert_eq!(out.nonce, Some(want));
    assert!(want.index >= 32);
    assert_eq!(out.labels_searched, want_batch + 4 - 32);
    let md = PostMetadata::load(t.path()).expect("load").expect("md");
    assert_eq!(md.nonce, Some(want.index));
    assert_eq!(md.nonce_value, Some(label(&com, want.index, 2)));
    assert_eq!(md.last_position, Some(want_batch));
    let done = snapshot(t.path());

    // Stopped during the search: LastPosition is saved, the rerun resumes and agrees.
    let s = tmp();
    let stop = AtomicBool::new(false);
    let out = initialize(
        s.path(),
        &opts,
        &cpu(),
        &|e| {
            if matches!(e, InitProgress::Searching { .. }) {
                stop.store(true, Ordering::SeqCst);
            }
        },
        &stop,
    )
    .expect("stopped run");
    assert_eq!(out.state, InitState::Stopped);
    assert_eq!(out.nonce, None);
    let md = PostMetadata::load(s.path()).expect("load").expect("md");
    assert_eq!(
        (md.nonce, md.last_position),
        (None, Some(36)),
        "batch 32..36 searched"
    );
    let st = init_status(s.path()).expect("status").expect("md");
    assert!(st.data_complete() && !st.is_complete());
    let out = run(s.path(), &opts).expect("resumed search");
    assert_eq!(out.nonce, Some(want));
    assert_eq!(snapshot(s.path()), done);

    // Resumption starts at max(LastPosition, numLabels): past the first candidate, another one.
    let r = tmp();
    copy_dir(t.path(), r.path());
    let mut md = PostMetadata::load(r.path()).expect("load").expect("md");
    md.nonce = None;
    md.nonce_value = None;
    md.last_position = Some(want.index + 1);
    md.save(r.path()).expect("save");
    let out = run(r.path(), &opts).expect("search from LastPosition");
    let (later, _) = expect_from(want.index + 1);
    assert_eq!(out.nonce, Some(later));
    assert!(later.index > want.index);
    assert_eq!(out.labels_written, 0);
    // LastPosition below numLabels is ignored.
    md.last_position = Some(3);
    md.save(r.path()).expect("save");
    assert_eq!(run(r.path(), &opts).expect("search").nonce, Some(want));

    // A range run never searches past the end: 2 files of 64 labels, the first without a
    // candidate; initializing only file 0 records no nonce and computes nothing past it.
    let mut o = InitOptions::new([0; 32], [7; 32], 2, 64, 1024);
    o.scrypt_n = 2;
    o.batch_size = 16;
    let t128 = vrf_difficulty(128).expect("t");
    let id = (0u64..100_000)
        .map(|c| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&c.to_le_bytes());
            id
        })
        .find(|id| {
            let com = commitment(id, &[7; 32]);
            (0..64).all(|i| label32(&com, i, 2) >= t128)
        })
        .expect("an identity whose file 0 holds no candidate");
    o.node_id = id;
    let p = tmp();
    let out = run(
        p.path(),
        &InitOptions {
            from_file: Some(0),
            to_file: Some(0),
            ..o.clone()
        },
    )
    .expect("file 0");
    assert_eq!(out.state, InitState::RangeComplete);
    assert_eq!((out.nonce, out.labels_searched), (None, 0));
    let md = PostMetadata::load(p.path()).expect("load").expect("md");
    assert_eq!((md.nonce, md.last_position), (None, None));
}

/// Wraps the CPU backend and damages its output.
struct Faulty {
    inner: CpuBackend,
    flip_last: bool,
    drop_candidates: bool,
}

impl LabelBackend for Faulty {
    fn name(&self) -> String {
        "faulty".into()
    }

    fn preferred_batch(&self) -> usize {
        16
    }

    fn compute(&self, req: &LabelRequest<'_>, out: &mut [u8]) -> Result<Vec<VrfCandidate>, BackendError> {
        let c = self.inner.compute(req, out)?;
        if self.flip_last {
            let n = out.len();
            out[n - 1] ^= 1;
        }
        Ok(if self.drop_candidates { Vec::new() } else { c })
    }
}

#[test]
fn faulty_backends_are_caught() {
    let opts = small_opts(6);
    let stop = AtomicBool::new(false);
    let t = tmp();
    let flip = Faulty {
        inner: cpu(),
        flip_last: true,
        drop_candidates: false,
    };
    let err = initialize(t.path(), &opts, &flip, &|_| {}, &stop).expect_err("flipped byte");
    match err {
        InitError::ReferenceLabelMismatch {
            index, device, cpu, ..
        } => {
            assert_eq!(index, 15, "first call: 16 labels");
            assert_ne!(device, cpu);
        }
        e => panic!("unexpected {e:?}"),
    }
    let st = init_status(t.path()).expect("status").expect("md");
    assert_eq!(st.labels_present(), 0, "nothing of a bad batch is written");

    let drop = Faulty {
        inner: cpu(),
        flip_last: false,
        drop_candidates: true,
    };
    let err = initialize(t.path(), &opts, &drop, &|_| {}, &stop).expect_err("dropped candidates");
    assert!(matches!(err, InitError::CandidateMismatch { .. }), "{err:?}");
}

#[test]
fn invalid_options_are_refused() {
    let t = tmp();
    let dir = t.path().join("d");
    let o = small_opts(7);
    assert!(matches!(
        run(
            &dir,
            &InitOptions {
                scrypt_n: 3,
                ..o.clone()
            }
        ),
        Err(InitError::ScryptN(_))
    ));
    assert!(matches!(
        run(
            &dir,
            &InitOptions {
                num_units: 0,
                ..o.clone()
            }
        ),
        Err(InitError::ZeroUnits)
    ));
    assert!(matches!(
        run(
            &dir,
            &InitOptions {
                batch_size: 0,
                ..o.clone()
            }
        ),
        Err(InitError::ZeroBatch)
    ));
    assert!(matches!(
        run(
            &dir,
            &InitOptions {
                max_file_size: 1000,
                ..o.clone()
            }
        ),
        Err(InitError::Layout(_))
    ));
    assert!(matches!(
        run(
            &dir,
            &InitOptions {
                num_units: 1,
                labels_per_unit: 8,
                ..o.clone()
            }
        ),
        Err(InitError::Vrf(_))
    ));
    assert!(!dir.exists(), "nothing created");
}

#[test]
fn check_finds_every_corrupted_label_of_the_reference_directory() {
    let v = vector_json();
    let n = vector_opts(&v).scrypt_n;
    let t = tmp();
    copy_dir(&vectors().join("init_small_pairA"), t.path());

    let r = check_data(t.path(), 0.05, n, 2, &|_| {}, Some(7)).expect("check pristine");
    assert!(r.is_ok(), "{r:?}");
    assert!(
        r.labels_checked >= 4 && r.labels_checked < 1000,
        "{}",
        r.labels_checked
    );
    assert_eq!(r.files_checked, 4);
    assert_eq!(r.seed, 7);
    assert!(matches!(r.nonce, NonceCheck::Valid { index: 3270, .. }));
    let again = check_data(t.path(), 0.05, n, 2, &|_| {}, Some(7)).expect("same seed");
    assert_eq!(again.labels_checked, r.labels_checked);

    // Corrupt three labels in two files.
    let corrupt = [(1u64, 100u64), (1, 5000), (3, 16383)];
    for (k, off) in corrupt {
        let p = t.path().join(file_name(k));
        let mut b = std::fs::read(&p).expect("read");
        b[off as usize] ^= 0x40;
        std::fs::write(&p, b).expect("write");
    }
    let seen = RefCell::new(Vec::new());
    let r = check_data(
        t.path(),
        1.0,
        n,
        2,
        &|e| {
            if let CheckProgress::Mismatch(m) = e {
                seen.borrow_mut().push(m);
            }
        },
        None,
    )
    .expect("check corrupted");
    assert_eq!(r.labels_checked, 4096);
    assert!(!r.is_ok());
    assert!(r.file_issues.is_empty());
    assert_eq!(r.mismatches_total, 3);
    assert_eq!(r.mismatches, seen.into_inner());
    let com = commitment(&vector_opts(&v).node_id, &vector_opts(&v).commitment_atx_id);
    for (m, (k, off)) in r.mismatches.iter().zip(corrupt) {
        let label_off = off / 16 * 16;
        let index = k * 1024 + off / 16;
        assert_eq!(m.file, k);
        assert_eq!(m.path, t.path().join(file_name(k)));
        assert_eq!(m.offset, label_off);
        assert_eq!(m.index, index);
        assert_eq!(m.expected, label(&com, index, n));
        let mut found = m.expected;
        found[(off % 16) as usize] ^= 0x40;
        assert_eq!(m.found, found);
        assert!(m.to_string().contains(&format!("offset {label_off}")), "{m}");
    }
}

#[test]
fn check_reports_file_problems_and_a_bad_nonce() {
    let opts = small_opts(8);
    let (full, _) = reference(&opts);
    let d = full.path();
    std::fs::remove_file(d.join(file_name(2))).expect("rm");
    set_len(&d.join(file_name(4)), 64 * 16 - 10);
    std::fs::write(d.join(file_name(12)), [0u8; 16]).expect("surplus");
    let r = check_data(d, 1.0, opts.scrypt_n, 2, &|_| {}, None).expect("check");
    assert_eq!(r.mismatches_total, 0, "{:?}", r.mismatches);
    assert_eq!(r.labels_checked, 400 - 64 - 1);
    assert_eq!(
        r.file_issues,
        vec![
            FileIssue::Surplus {
                file: 12,
                path: d.join(file_name(12))
            },
            FileIssue::Missing {
                file: 2,
                path: d.join(file_name(2))
            },
            FileIssue::WrongSize {
                file: 4,
                path: d.join(file_name(4)),
                expected: 1024,
                actual: 1014
            },
        ]
    );
    assert!(matches!(r.nonce, NonceCheck::Valid { .. }));

    // A nonce that does not qualify, and a NonceValue that is not the nonce's label.
    let mut md = PostMetadata::load(d).expect("load").expect("md");
    let t = vrf_difficulty(400).expect("t");
    let bad = (0..400)
        .find(|i| label32(&opts.commitment(), *i, 16) >= t)
        .expect("some index");
    md.nonce = Some(bad);
    md.nonce_value = None;
    md.save(d).expect("save");
    let r = check_data(d, 0.01, opts.scrypt_n, 1, &|_| {}, None).expect("check");
    assert!(matches!(r.nonce, NonceCheck::NotBelowThreshold { index, .. } if index == bad));
    md.nonce_value = Some([0; 16]);
    md.save(d).expect("save");
    let r = check_data(d, 0.01, opts.scrypt_n, 1, &|_| {}, None).expect("check");
    assert!(matches!(r.nonce, NonceCheck::ValueMismatch { .. }));

    for f in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(check_data(d, f, 16, 1, &|_| {}, None).is_err(), "{f}");
    }
    assert!(check_data(&d.join("nothing"), 1.0, 16, 1, &|_| {}, None).is_err());
}
