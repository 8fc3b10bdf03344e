//! A striped identity's one official directory on this rig.
//!
//! The scheduler spreads an identity's files over the disks of one worker, each file wholly on
//! one disk (`<disk>/smeshfleet/<node id>/postdata_<k>.bin`, each directory with its own
//! `postdata_metadata.json`). The official tools (postcli, go-spacemesh, post-service) read one
//! directory, so one of them is the identity's **home**: it holds the metadata with the VRF nonce
//! merged from every directory, and a symbolic link `postdata_<k>.bin -> <other disk>/smeshfleet/
//! <node id>/postdata_<k>.bin` for every file on the rig's other disks. smeshfleet's own prover
//! finds the files on every disk (links resolved, each file read once, by the reader of the
//! device that holds it), so it reads the disks in parallel whatever the home is.
//!
//! The home is the directory holding the identity's lowest-numbered real file on this rig
//! (normally `postdata_0.bin`, which the scheduler places and starts first). The rule needs no
//! coordinator state and no extra field in the job spec, every worker can recompute it from its
//! disks alone after a restart, and it is the directory an operator expects: the one with file
//! 0. Should the lowest real file appear later on another disk, the home moves: the new home gets
//! the links and the merged nonce, and the links left in the old one are removed (links only:
//! a real file is never removed or replaced here).
//!
//! Links are made atomically (a link under a temporary name, then renamed over the old one), so a
//! reader sees either the old link or the new one, never a missing file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use post::data::{file_name, list_files};

use super::ExecError;

/// What [`sync_home`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeSync {
    /// The identity's official directory on this rig; `None` when no disk holds a file yet.
    pub home: Option<PathBuf>,
    /// Links created or repointed.
    pub linked: Vec<u64>,
    /// Stale links removed (pointing nowhere, or left in a directory that is no longer home).
    pub removed: Vec<PathBuf>,
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExecError {
    let path = path.to_path_buf();
    move |source| ExecError::Io { step, path, source }
}

/// The real (not symbolic link) data files of `dir`, by number; empty when `dir` does not exist.
fn real_files(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, ExecError> {
    if !dir.is_dir() {
        return Ok(BTreeMap::new());
    }
    let listed = list_files(dir).map_err(|e| ExecError::Metadata(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, path) in listed {
        let md = std::fs::symlink_metadata(&path).map_err(io("inspecting", &path))?;
        if md.file_type().is_file() {
            out.insert(k, path);
        }
    }
    Ok(out)
}

/// The symbolic links named like data files in `dir`.
fn data_links(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, ExecError> {
    if !dir.is_dir() {
        return Ok(BTreeMap::new());
    }
    let listed = list_files(dir).map_err(|e| ExecError::Metadata(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, path) in listed {
        let md = std::fs::symlink_metadata(&path).map_err(io("inspecting", &path))?;
        if md.file_type().is_symlink() {
            out.insert(k, path);
        }
    }
    Ok(out)
}

/// Points `link` at `target` atomically, unless `link` is a real file (never replaced) or already
/// points there. Returns whether it changed anything.
pub fn link_atomically(link: &Path, target: &Path) -> Result<bool, ExecError> {
    match std::fs::symlink_metadata(link) {
        Ok(md) if !md.file_type().is_symlink() => {
            return Err(ExecError::Invalid(format!(
                "{} is a real file: a link to {} would replace it",
                link.display(),
                target.display()
            )))
        }
        Ok(_) => {
            if std::fs::read_link(link).map_err(io("reading the link", link))? == target {
                return Ok(false);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting", link)(e)),
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.link-{}", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing", &tmp)(e)),
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(io("linking", &tmp))?;
    // A real file may have appeared meanwhile (nothing else of ours writes one here, but an
    // official tool might): check again right before the rename, and give up rather than
    // replace it.
    if let Ok(md) = std::fs::symlink_metadata(link) {
        if !md.file_type().is_symlink() {
            let _ = std::fs::remove_file(&tmp);
            return Err(ExecError::Invalid(format!(
                "{} became a real file: not replaced",
                link.display()
            )));
        }
    }
    std::fs::rename(&tmp, link).map_err(io("renaming the link", link))?;
    Ok(true)
}

/// Serializes this process's read-modify-writes of PoST metadata (VRF nonce merges, home syncs):
/// init jobs on several devices and the stream server may finish batches of one identity at the
/// same moment, and a nonce merged by one must not be overwritten by another's older copy. Not
/// held while labels are computed or written.
pub fn metadata_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Brings the identity's home on this rig up to date (under [`metadata_lock`]). `dirs` are the identity's directories on
/// every disk of the rig (existing or not), in the rig's disk order; `scrypt_n` is the identity's
/// (the merged VRF nonce is re-derived before it is kept).
///
/// A file number that is a real file in two directories is not linked (and a warning is
/// logged): which copy is current is the coordinator's to say, see `init::remove_stale_copies`.
pub fn sync_home(dirs: &[PathBuf], scrypt_n: usize) -> Result<HomeSync, ExecError> {
    let _g = metadata_lock();
    let mut out = HomeSync::default();
    let mut owner: BTreeMap<u64, Vec<&PathBuf>> = BTreeMap::new();
    for dir in dirs {
        for k in real_files(dir)?.into_keys() {
            owner.entry(k).or_default().push(dir);
        }
    }
    let Some(home) = owner.values().next().and_then(|d| d.first().copied()) else {
        return Ok(out);
    };
    out.home = Some(home.clone());
    // Links in directories that are not home are left over from a former home.
    for dir in dirs.iter().filter(|d| *d != home) {
        for (_, link) in data_links(dir)? {
            std::fs::remove_file(&link).map_err(io("removing the link", &link))?;
            out.removed.push(link);
        }
    }
    // The merged nonce: every other directory's best candidate goes into home's metadata.
    for dir in dirs.iter().filter(|d| *d != home) {
        if !dir.join(post::data::METADATA_FILE).is_file() {
            continue;
        }
        post::initialize::merge_nonce_from(home, dir, scrypt_n).map_err(|e| {
            ExecError::Metadata(format!(
                "merging the VRF nonce of {} into {}: {e}",
                dir.display(),
                home.display()
            ))
        })?;
    }
    // Links for the files on the other disks.
    let mut wanted: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for (k, holders) in &owner {
        match holders.as_slice() {
            [one] if *one == home => {}
            [one] => {
                wanted.insert(*k, one.join(file_name(*k)));
            }
            many => tracing::warn!(
                file = k,
                dirs = ?many,
                "the identity's file is a real file in several directories; not linked"
            ),
        }
    }
    for (k, link) in data_links(home)? {
        if !wanted.contains_key(&k) {
            std::fs::remove_file(&link).map_err(io("removing the link", &link))?;
            out.removed.push(link);
        }
    }
    for (k, target) in wanted {
        if link_atomically(&home.join(file_name(k)), &target)? {
            out.linked.push(k);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    use post::backend::CpuBackend;
    use post::initialize::{initialize, InitOptions};
    use post::metadata::PostMetadata;
    use protocol::DiskInfo;

    const NODE: [u8; 32] = [0x31; 32];
    const ATX: [u8; 32] = [0x42; 32];
    const N: usize = 16;

    /// 4 files of 1024 labels; files `from..=to` into `dir`, as postcli's `--from-file/--to-file`.
    fn init(dir: &Path, from: u64, to: u64) {
        let mut o = InitOptions::new(NODE, ATX, 4, 1024, 16 * 1024);
        o.scrypt_n = N;
        o.from_file = Some(from);
        o.to_file = Some(to);
        let cpu = CpuBackend::new(2).expect("cpu");
        initialize(dir, &o, &cpu, &|_| {}, &AtomicBool::new(false)).expect("initialize");
    }

    fn disk(id: &str, mount: &Path, device: &str) -> DiskInfo {
        DiskInfo {
            id: id.into(),
            mount: mount.to_string_lossy().into_owned(),
            physical_device: device.into(),
            filesystem: "ext4".into(),
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            read_mb_s: 100.0,
            write_mb_s: 100.0,
        }
    }

    /// Files 0 and 3 on disk A, 1 and 2 on disk B: A is home, with links to B's files and the
    /// nonce of both; post's checker and its one-directory prover read home as the reference
    /// layout, and smeshfleet's prover finds each file once, on its own device.
    #[test]
    fn the_home_of_a_striped_identity_is_an_official_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let disks = [
            disk("da", &tmp.path().join("a"), "/dev/sda"),
            disk("db", &tmp.path().join("b"), "/dev/sdb"),
        ];
        let node = hex::encode(NODE);
        let dirs: Vec<PathBuf> = disks
            .iter()
            .map(|d| super::super::identity_dir(d, &node))
            .collect();
        init(&dirs[1], 1, 2);
        init(&dirs[0], 0, 0);
        init(&dirs[0], 3, 3);
        // A leftover link in B (B is not home) goes away.
        std::os::unix::fs::symlink(dirs[0].join("postdata_0.bin"), dirs[1].join("postdata_0.bin"))
            .expect("stale link");
        let single = tmp.path().join("single");
        init(&single, 0, 3);

        let synced = sync_home(&dirs, N).expect("sync");
        assert_eq!(synced.home.as_ref(), Some(&dirs[0]));
        assert_eq!(synced.linked, vec![1, 2]);
        assert_eq!(synced.removed, vec![dirs[1].join("postdata_0.bin")]);
        for k in [1u64, 2] {
            let link = dirs[0].join(file_name(k));
            assert_eq!(
                std::fs::read_link(&link).expect("link"),
                dirs[1].join(file_name(k))
            );
        }
        // Idempotent.
        let again = sync_home(&dirs, N).expect("sync again");
        assert!(again.linked.is_empty() && again.removed.is_empty(), "{again:?}");

        let home = PostMetadata::load(&dirs[0]).expect("md").expect("home metadata");
        let reference = PostMetadata::load(&single)
            .expect("md")
            .expect("reference metadata");
        assert_eq!(
            home.nonce, reference.nonce,
            "the home holds the nonce of every disk"
        );
        assert_eq!(home.nonce_value, reference.nonce_value);

        let report = post::check::check_data(&dirs[0], 1.0, N, 2, &|_| {}, Some(1)).expect("check");
        assert_eq!(report.files_checked, 4, "{report:?}");
        assert_eq!(report.mismatches_total, 0, "{report:?}");
        assert!(report.file_issues.is_empty(), "{report:?}");

        let md = crate::exec::init::metadata_for(&protocol::IdentityParams {
            identity_id: uuid::Uuid::nil(),
            node_id: node.clone(),
            commitment_atx_id: Some(hex::encode(ATX)),
            num_units: 4,
            labels_per_unit: 1024,
            max_file_size: 16 * 1024,
            scrypt_n: N as u32,
        })
        .expect("metadata");
        let refs: Vec<&DiskInfo> = disks.iter().collect();
        let mut files = super::super::prove::find_files(&refs, &node, &md).expect("find");
        files.sort_by_key(|f| f.index);
        let found: Vec<(u64, &str)> = files.iter().map(|f| (f.index, f.device.as_str())).collect();
        assert_eq!(
            found,
            vec![(0, "/dev/sda"), (1, "/dev/sdb"), (2, "/dev/sdb"), (3, "/dev/sda")],
            "every file once, read by its own device's reader"
        );
        let cfg = post::proof::ProofConfig {
            k1: 8,
            k2: 6,
            pow_difficulty: [0xff; 32],
        };
        let challenge = [7u8; 32];
        let pows = [0u64];
        let layout = post::data::Layout::new(4, 1024, 16 * 1024).expect("layout");
        let data = post::reader::StripedData::open(layout, &files).expect("open");
        let stop = AtomicBool::new(false);
        let ours = post::reader::scan_pass_files(&data, &challenge, &cfg, 0, &pows, 2, &|_| {}, &stop)
            .expect("striped pass");
        let official = post::prove::scan_pass(&dirs[0], &challenge, &cfg, 0, &pows, 1, &|_| {}, &stop)
            .expect("post over home");
        let reference = post::prove::scan_pass(&single, &challenge, &cfg, 0, &pows, 1, &|_| {}, &stop)
            .expect("post over the reference");
        assert!(reference.is_some(), "K1 = 8 > K2 = 6 finds a proof");
        assert_eq!(official, reference);
        assert_eq!(ours.proof, reference);
    }

    /// A file that appears on another disk with a lower number moves the home there; the old
    /// home's links go, its real files stay.
    #[test]
    fn the_home_follows_the_lowest_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = [tmp.path().join("a"), tmp.path().join("b")];
        init(&dirs[1], 1, 1);
        init(&dirs[0], 2, 2);
        let first = sync_home(&dirs, N).expect("sync");
        assert_eq!(first.home.as_ref(), Some(&dirs[1]));
        assert_eq!(first.linked, vec![2]);
        init(&dirs[0], 0, 0);
        let second = sync_home(&dirs, N).expect("sync");
        assert_eq!(second.home.as_ref(), Some(&dirs[0]));
        assert_eq!(second.linked, vec![1]);
        assert_eq!(second.removed, vec![dirs[1].join("postdata_2.bin")]);
        assert!(std::fs::symlink_metadata(dirs[1].join("postdata_1.bin"))
            .expect("real")
            .file_type()
            .is_file());
        assert!(std::fs::symlink_metadata(dirs[0].join("postdata_2.bin"))
            .expect("real")
            .file_type()
            .is_file());
    }

    #[test]
    fn a_link_never_replaces_a_real_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("postdata_0.bin");
        std::fs::write(&real, b"labels").expect("write");
        let target = dir.path().join("elsewhere.bin");
        std::fs::write(&target, b"other").expect("write");
        assert!(matches!(
            link_atomically(&real, &target),
            Err(ExecError::Invalid(_))
        ));
        assert_eq!(std::fs::read(&real).expect("read"), b"labels");
        // A link is made, kept when right, and repointed atomically when not.
        let link = dir.path().join("postdata_1.bin");
        assert!(link_atomically(&link, &target).expect("link"));
        assert!(!link_atomically(&link, &target).expect("same link"));
        assert!(link_atomically(&link, &real).expect("repoint"));
        assert_eq!(std::fs::read_link(&link).expect("link"), real);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(".link-")),
            "no temporary link is left: {names:?}"
        );
    }
}
