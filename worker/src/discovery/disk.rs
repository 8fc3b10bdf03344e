//! The `--disk` directories: where each lives (mount point, file system, physical block device),
//! how big it is, and how fast it reads and writes sequentially.
//!
//! - **Mount point**: the longest mount point that is a prefix (whole path components) of the
//!   directory's canonical path, among `/proc/self/mounts` and `sysinfo`'s disks; capacity and
//!   free space come from `sysinfo` (`statvfs`). File systems `sysinfo` skips (tmpfs, NFS, CIFS)
//!   have unknown sizes, reported as 0 (the scheduler places nothing there).
//! - **Physical device**: the block device the directory's file system lives on (its `st_dev`,
//!   looked up in `/sys/dev/block`, or else the mount's device name), resolved to the whole disk:
//!   a partition to its parent (`/sys/class/block/<dev>/..`), a device-mapper or md device to the
//!   devices under it (`slaves/`, joined with `+` when there are several). When nothing resolves
//!   (overlay, tmpfs, btrfs's anonymous devices without a `/dev` name) the mount's device name
//!   stands in, so two directories on one file system always report the same device. ZFS
//!   datasets report their pool (`zfs:tank`).
//! - **Id**: the first 16 hex digits of the BLAKE3 hash of the canonical path, stable across
//!   restarts as long as the path is.
//! - **Speed**: [`measure_disk`] writes a temporary file of pseudo-random bytes (so compressing
//!   file systems cannot cheat) with `fdatasync` every 32 MiB, then reads it back, with
//!   `O_DIRECT` where the platform and file system allow it so the figure is the device's, not
//!   the page cache's. Where `O_DIRECT` is refused (tmpfs before Linux 6.6, some FUSE and
//!   network file systems, non-Linux) the read goes through the page cache, which still holds
//!   the data just written: that read figure is optimistic and [`DiskSpeed::read_direct`] says
//!   so (the worker logs it). Clearing the cache needs privileges the worker does not have. The
//!   file is always removed, also on error. Each phase stops early after the time limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use protocol::DiskInfo;

use super::DiscoveryError;

/// One `--disk` directory as found: its canonical path and what is reported for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskProbe {
    /// The canonical directory the worker stores data under.
    pub dir: PathBuf,
    /// Rates are 0 until [`measure_disk`] fills them in.
    pub info: DiskInfo,
}

/// A mounted file system as `sysinfo` or `/proc/self/mounts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// What is mounted: `/dev/sda1`, `/dev/mapper/vg-data`, `tmpfs`, `server:/export`.
    pub device: String,
    pub mount_point: PathBuf,
    pub filesystem: String,
    /// Bytes, when known (`sysinfo` lists only real file systems).
    pub capacity_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

/// The mounted file systems `sysinfo` sees, with their size (one `statvfs` each).
pub fn sysinfo_mounts() -> Vec<MountEntry> {
    let disks =
        sysinfo::Disks::new_with_refreshed_list_specifics(sysinfo::DiskRefreshKind::nothing().with_storage());
    disks
        .list()
        .iter()
        .map(|d| MountEntry {
            device: d.name().to_string_lossy().into_owned(),
            mount_point: d.mount_point().to_path_buf(),
            filesystem: d.file_system().to_string_lossy().into_owned(),
            capacity_bytes: Some(d.total_space()),
            free_bytes: Some(d.available_space()),
        })
        .collect()
}

/// Mounts from `/proc/self/mounts`-formatted text (sizes unknown). Octal escapes (`\040` for a
/// space) in the device and mount point are decoded.
pub fn parse_proc_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let device = unescape_mount_field(f.next()?);
            let mount_point = PathBuf::from(unescape_mount_field(f.next()?));
            let filesystem = f.next()?.to_string();
            Some(MountEntry {
                device,
                mount_point,
                filesystem,
                capacity_bytes: None,
                free_bytes: None,
            })
        })
        .collect()
}

fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The index of the mount whose mount point is the longest prefix of `path` (whole components;
/// on a tie, the later one, as a later mount hides an earlier one at the same place).
pub fn longest_mount_prefix<'a, I>(path: &Path, mount_points: I) -> Option<usize>
where
    I: IntoIterator<Item = &'a Path>,
{
    let mut best: Option<(usize, usize)> = None;
    for (i, m) in mount_points.into_iter().enumerate() {
        if path.starts_with(m) {
            let depth = m.components().count();
            if best.is_none_or(|(_, d)| depth >= d) {
                best = Some((i, depth));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The id of a disk directory: the first 16 hex digits of BLAKE3(canonical path).
pub fn disk_id(canonical: &Path) -> String {
    let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes());
    hex::encode(&hash.as_bytes()[..8])
}

/// Major and minor number of a Linux `dev_t` (glibc's encoding).
pub fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major as u32, minor as u32)
}

/// The physical device of a file system, as `/dev/<disk>` (several joined with `+`).
///
/// `root` is the file system root (`/`; tests pass a fake tree with `sys/` and `dev/`), `device`
/// the mount's device name (`/dev/mapper/vg-data`, `overlay`) and `st_dev` the device number of a
/// file on it, if known. Falls back to `device` itself when no block device can be found.
pub fn physical_device(root: &Path, device: &str, st_dev: Option<u64>) -> String {
    let name = st_dev
        .and_then(|d| block_name_from_dev(root, d))
        .or_else(|| block_name_from_device_path(root, device));
    match name {
        Some(n) => {
            let mut tops = Vec::new();
            whole_disks(root, &n, 0, &mut tops);
            tops.sort();
            tops.dedup();
            tops.iter()
                .map(|t| format!("/dev/{t}"))
                .collect::<Vec<_>>()
                .join("+")
        }
        None if device.is_empty() => "unknown".to_string(),
        None => device.to_string(),
    }
}

/// [`physical_device`] of a mount, except that every ZFS dataset of one pool reports the pool
/// (`zfs:tank`): ZFS has no block device of its own, and the pool's disks are shared by all its
/// datasets.
pub fn mount_physical_device(root: &Path, mount: &MountEntry, st_dev: Option<u64>) -> String {
    if mount.filesystem == "zfs" {
        let pool = mount.device.split('/').next().unwrap_or_default();
        return format!("zfs:{pool}");
    }
    physical_device(root, &mount.device, st_dev)
}

/// The kernel name (`sda1`, `dm-0`) of block device `dev` from `/sys/dev/block/MAJ:MIN`.
fn block_name_from_dev(root: &Path, dev: u64) -> Option<String> {
    let (major, minor) = dev_major_minor(dev);
    if major == 0 {
        // Anonymous devices (tmpfs, overlay, btrfs subvolumes) have no block device.
        return None;
    }
    let link = root.join("sys/dev/block").join(format!("{major}:{minor}"));
    let real = fs::canonicalize(link).ok()?;
    Some(real.file_name()?.to_str()?.to_string())
}

/// The kernel name of a `/dev/...` device name, following symlinks (`/dev/mapper/x` and
/// `/dev/disk/by-*/x` point at `/dev/dm-N`, `/dev/sdXN`).
fn block_name_from_device_path(root: &Path, device: &str) -> Option<String> {
    let rel = device.strip_prefix("/dev/")?;
    let path = root.join("dev").join(rel);
    let real = fs::canonicalize(&path).unwrap_or(path);
    let name = real.file_name()?.to_str()?.to_string();
    root.join("sys/class/block").join(&name).exists().then_some(name)
}

/// Push the whole disks under block device `name`.
fn whole_disks(root: &Path, name: &str, depth: u32, out: &mut Vec<String>) {
    let node = root.join("sys/class/block").join(name);
    if depth < 8 {
        if node.join("partition").exists() {
            // /sys/class/block/sda1 -> .../block/sda/sda1: the parent directory is the disk.
            let parent = fs::canonicalize(&node)
                .ok()
                .and_then(|p| Some(p.parent()?.file_name()?.to_str()?.to_string()));
            if let Some(parent) = parent {
                whole_disks(root, &parent, depth + 1, out);
                return;
            }
        }
        if let Ok(rd) = fs::read_dir(node.join("slaves")) {
            let mut under: Vec<String> = rd
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            if !under.is_empty() {
                under.sort();
                for u in under {
                    whole_disks(root, &u, depth + 1, out);
                }
                return;
            }
        }
    }
    out.push(name.to_string());
}

#[cfg(unix)]
fn st_dev(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.dev())
}

#[cfg(not(unix))]
fn st_dev(_path: &Path) -> Option<u64> {
    None
}

/// A unique name for a temporary file of this process in `dir`.
fn temp_name(dir: &Path, what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    dir.join(format!(".smeshfleet-{what}-{}-{nanos}.tmp", std::process::id()))
}

/// Removes its file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a temporary file");
            }
        }
    }
}

/// Create `path` if missing, check that it is a writable directory, and return its canonical
/// form.
pub fn prepare_dir(path: &Path) -> Result<PathBuf, DiscoveryError> {
    if path.exists() && !path.is_dir() {
        return Err(DiscoveryError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    fs::create_dir_all(path).map_err(|source| DiscoveryError::CreateDir {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = fs::canonicalize(path).map_err(|source| DiscoveryError::Canonicalize {
        path: path.to_path_buf(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(DiscoveryError::NotADirectory { path: dir });
    }
    let probe = temp_name(&dir, "probe");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| DiscoveryError::NotWritable {
            path: dir.clone(),
            source,
        })?;
    drop(file);
    drop(TempFile(probe));
    Ok(dir)
}

/// Every mount: `/proc/self/mounts` first (all file systems, sizes unknown), then
/// [`sysinfo_mounts`] (real file systems, with sizes). With [`longest_mount_prefix`] preferring
/// the later of equal mount points, a directory's entry carries sizes whenever `sysinfo` knows
/// its file system, while a tmpfs or NFS mount below `/` is still found (looking only at
/// `sysinfo`'s list would wrongly give `/`).
pub fn all_mounts() -> Vec<MountEntry> {
    let mut m = fs::read_to_string("/proc/self/mounts")
        .map(|t| parse_proc_mounts(&t))
        .unwrap_or_default();
    m.extend(sysinfo_mounts());
    m
}

/// Find where `path` lives among `mounts` (from [`all_mounts`]) after [`prepare_dir`]. Rates
/// are left at 0; sizes are 0 when the mount's entry has none.
pub fn probe_disk(path: &Path, mounts: &[MountEntry]) -> Result<DiskProbe, DiscoveryError> {
    let dir = prepare_dir(path)?;
    let i = longest_mount_prefix(&dir, mounts.iter().map(|m| m.mount_point.as_path()))
        .ok_or_else(|| DiscoveryError::NoFileSystem { path: dir.clone() })?;
    let entry = &mounts[i];
    if entry.capacity_bytes.is_none() {
        tracing::warn!(
            disk = %dir.display(),
            filesystem = %entry.filesystem,
            "the disk's file system size is unknown (sysinfo does not list it); reporting 0 bytes"
        );
    }
    let info = DiskInfo {
        id: disk_id(&dir),
        // The directory data goes under (the protocol's meaning); the mount point is derived
        // from it again where needed.
        mount: dir.to_string_lossy().into_owned(),
        physical_device: mount_physical_device(Path::new("/"), entry, st_dev(&dir)),
        filesystem: entry.filesystem.clone(),
        capacity_bytes: entry.capacity_bytes.unwrap_or(0),
        free_bytes: entry.free_bytes.unwrap_or(0),
        read_mb_s: 0.0,
        write_mb_s: 0.0,
    };
    Ok(DiskProbe { dir, info })
}

/// Sequential speeds of one directory's disk, in MB/s (10^6 bytes per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSpeed {
    pub write_mb_s: f64,
    pub read_mb_s: f64,
    /// Whether the read bypassed the page cache (`O_DIRECT`); when false the read figure is
    /// optimistic (see the module documentation).
    pub read_direct: bool,
    /// Bytes written (and read back).
    pub bytes: u64,
}

/// Largest write or read call.
const CHUNK: usize = 4 << 20;
/// `fdatasync` after this many bytes, so the page cache does not absorb the write test.
const SYNC_EVERY: u64 = 32 << 20;
/// Buffer, offset and length alignment that `O_DIRECT` needs (the largest logical block size).
const DIRECT_ALIGN: usize = 4096;

/// `O_DIRECT` for `OpenOptionsExt::custom_flags` (it differs between architectures; the worker
/// has no `libc` dependency for one constant).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
const O_DIRECT: Option<i32> = Some(0o40000);
#[cfg(all(target_os = "linux", any(target_arch = "aarch64", target_arch = "arm")))]
const O_DIRECT: Option<i32> = Some(0o200000);
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm"
    )
)))]
const O_DIRECT: Option<i32> = None;

/// Write about `test_bytes` (rounded up to 4 KiB, at least 4 KiB) to a temporary file in `dir`
/// and read them back, each phase stopping early once `time_limit` has passed (after at least
/// one chunk). The file is removed before returning, also on error.
pub fn measure_disk(dir: &Path, test_bytes: u64, time_limit: Duration) -> Result<DiskSpeed, DiscoveryError> {
    let total = test_bytes.max(1).div_ceil(DIRECT_ALIGN as u64) * DIRECT_ALIGN as u64;
    let chunk = usize::try_from(total).map_or(CHUNK, |t| t.min(CHUNK));
    let tmp = TempFile(temp_name(dir, "disk-test"));
    let write_err = |source| DiscoveryError::WriteTest {
        path: dir.to_path_buf(),
        source,
    };

    // Pseudo-random bytes, so that compressing or deduplicating file systems write them all.
    let mut raw = vec![0u8; chunk + DIRECT_ALIGN];
    let off = raw.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
    let buf = &mut raw[off..off + chunk];
    let mut xof = blake3::Hasher::new()
        .update(dir.as_os_str().as_encoded_bytes())
        .finalize_xof();
    xof.fill(buf);

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp.0)
        .map_err(write_err)?;
    let start = Instant::now();
    let (mut written, mut unsynced) = (0u64, 0u64);
    while written < total {
        let n = (total - written).min(chunk as u64) as usize;
        // Vary the data a little per chunk so no two chunks are equal.
        buf[..8].copy_from_slice(&written.to_le_bytes());
        file.write_all(&buf[..n]).map_err(write_err)?;
        written += n as u64;
        unsynced += n as u64;
        if unsynced >= SYNC_EVERY {
            file.sync_data().map_err(write_err)?;
            unsynced = 0;
        }
        if start.elapsed() >= time_limit {
            break;
        }
    }
    file.sync_data().map_err(write_err)?;
    let write_s = start.elapsed().as_secs_f64();
    drop(file);

    let (read, read_s, read_direct) =
        read_back(&tmp.0, buf, time_limit).map_err(|source| DiscoveryError::ReadTest {
            path: dir.to_path_buf(),
            source,
        })?;
    drop(tmp);
    Ok(DiskSpeed {
        write_mb_s: written as f64 / write_s.max(1e-9) / 1e6,
        read_mb_s: read as f64 / read_s.max(1e-9) / 1e6,
        read_direct,
        bytes: written,
    })
}

/// Read `path` sequentially into `buf` (aligned for `O_DIRECT`) until EOF or `time_limit`:
/// (bytes, seconds, whether `O_DIRECT` was used).
fn read_back(path: &Path, buf: &mut [u8], time_limit: Duration) -> io::Result<(u64, f64, bool)> {
    if O_DIRECT.is_some() && buf.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
        match read_file(path, buf, time_limit, true) {
            Ok((n, s)) => return Ok((n, s, true)),
            // EINVAL: the file system does not do O_DIRECT (older tmpfs, some FUSE); read buffered.
            Err(e) if e.raw_os_error() == Some(22) || e.kind() == io::ErrorKind::InvalidInput => {
                tracing::debug!(path = %path.display(), "O_DIRECT refused; measuring a buffered read");
            }
            Err(e) => return Err(e),
        }
    }
    let (n, s) = read_file(path, buf, time_limit, false)?;
    Ok((n, s, false))
}

fn read_file(path: &Path, buf: &mut [u8], time_limit: Duration, direct: bool) -> io::Result<(u64, f64)> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(flag) = O_DIRECT {
            opts.custom_flags(flag);
        }
    }
    #[cfg(not(unix))]
    let _ = direct;
    let mut file: File = opts.open(path)?;
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        read += n as u64;
        if start.elapsed() >= time_limit {
            break;
        }
    }
    Ok((read, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_prefix_is_by_component_and_longest() {
        let mounts = [
            Path::new("/"),
            Path::new("/mnt/a"),
            Path::new("/mnt/ab"),
            Path::new("/mnt/a/b"),
        ];
        let at = |p: &str| longest_mount_prefix(Path::new(p), mounts.iter().copied());
        assert_eq!(at("/mnt/a/x"), Some(1));
        assert_eq!(at("/mnt/abc"), Some(0));
        assert_eq!(at("/mnt/ab/x"), Some(2));
        assert_eq!(at("/mnt/a/b/c"), Some(3));
        assert_eq!(at("/mnt/a"), Some(1));
        assert_eq!(longest_mount_prefix(Path::new("/x"), [Path::new("/y")]), None);
        // A later mount at the same place hides the earlier one.
        assert_eq!(
            longest_mount_prefix(Path::new("/m/x"), [Path::new("/m"), Path::new("/m")]),
            Some(1)
        );
    }

    #[test]
    fn proc_mounts_are_parsed_and_unescaped() {
        let text = "/dev/sda1 / ext4 rw 0 0\ntmpfs /mnt/my\\040disk tmpfs rw 0 0\nbroken\n";
        let m = parse_proc_mounts(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/my disk"));
        assert_eq!(m[1].filesystem, "tmpfs");
        assert_eq!(m[0].device, "/dev/sda1");
        assert_eq!(unescape_mount_field("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn dev_t_decodes() {
        assert_eq!(dev_major_minor(0xfe00), (254, 0));
        assert_eq!(dev_major_minor(0x0803), (8, 3));
        // glibc's makedev: large major and minor numbers spill into the high bits.
        let makedev =
            |ma: u64, mi: u64| (ma & 0xfff) << 8 | (ma & !0xfff) << 32 | (mi & 0xff) | (mi & !0xff) << 12;
        for (ma, mi) in [(259u64, 0x12367u64), (0x1103, 5), (0xfffff, 0xfffff)] {
            assert_eq!(dev_major_minor(makedev(ma, mi)), (ma as u32, mi as u32));
        }
    }

    #[test]
    fn zfs_datasets_share_their_pool() {
        let m = |device: &str| MountEntry {
            device: device.into(),
            mount_point: PathBuf::from("/tank"),
            filesystem: "zfs".into(),
            capacity_bytes: None,
            free_bytes: None,
        };
        let root = Path::new("/nonexistent-root");
        assert_eq!(mount_physical_device(root, &m("tank/a"), None), "zfs:tank");
        assert_eq!(mount_physical_device(root, &m("tank/b/c"), None), "zfs:tank");
        assert_eq!(mount_physical_device(root, &m("tank"), None), "zfs:tank");
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = disk_id(Path::new("/mnt/a"));
        assert_eq!(a.len(), 16);
        assert_eq!(a, disk_id(Path::new("/mnt/a")));
        assert_ne!(a, disk_id(Path::new("/mnt/b")));
    }

    #[cfg(unix)]
    mod fake_sys {
        use super::*;
        use std::os::unix::fs::symlink;

        fn touch(p: &Path) {
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, b"").expect("write");
        }

        /// sda with partitions sda1 and sda2; sdb whole; dm-0 over sda2 and sdb; dm-1 over sda1;
        /// /dev/mapper links; /sys/dev/block numbers.
        fn tree() -> tempfile::TempDir {
            let t = tempfile::tempdir().expect("tempdir");
            let r = t.path();
            let dev = r.join("sys/devices/pci0/block");
            let virt = r.join("sys/devices/virtual/block");
            for p in ["sda/dev", "sda/sda1/partition", "sda/sda2/partition", "sdb/dev"] {
                touch(&dev.join(p));
            }
            for p in ["dm-0/dev", "dm-1/dev"] {
                touch(&virt.join(p));
            }
            let class = r.join("sys/class/block");
            fs::create_dir_all(&class).expect("mkdir");
            for (n, target) in [
                ("sda", "../../devices/pci0/block/sda"),
                ("sda1", "../../devices/pci0/block/sda/sda1"),
                ("sda2", "../../devices/pci0/block/sda/sda2"),
                ("sdb", "../../devices/pci0/block/sdb"),
                ("dm-0", "../../devices/virtual/block/dm-0"),
                ("dm-1", "../../devices/virtual/block/dm-1"),
            ] {
                symlink(target, class.join(n)).expect("symlink");
            }
            for (dm, slaves) in [("dm-0", &["sda2", "sdb"][..]), ("dm-1", &["sda1"][..])] {
                let s = virt.join(dm).join("slaves");
                fs::create_dir_all(&s).expect("mkdir");
                for sl in slaves {
                    symlink(format!("../../../../pci0/block/{sl}"), s.join(sl)).expect("symlink");
                }
            }
            let numbers = r.join("sys/dev/block");
            fs::create_dir_all(&numbers).expect("mkdir");
            symlink("../../devices/pci0/block/sda/sda1", numbers.join("8:1")).expect("symlink");
            symlink("../../devices/virtual/block/dm-1", numbers.join("253:1")).expect("symlink");
            for d in ["sda1", "sda2", "sdb", "dm-0", "dm-1"] {
                touch(&r.join("dev").join(d));
            }
            fs::create_dir_all(r.join("dev/mapper")).expect("mkdir");
            symlink("../dm-0", r.join("dev/mapper/vg-data")).expect("symlink");
            symlink("../dm-1", r.join("dev/mapper/vg-small")).expect("symlink");
            t
        }

        #[test]
        fn partitions_resolve_to_their_disk() {
            let t = tree();
            assert_eq!(physical_device(t.path(), "/dev/sda2", None), "/dev/sda");
            assert_eq!(physical_device(t.path(), "/dev/sdb", None), "/dev/sdb");
            // By device number, whatever the mount's name says.
            assert_eq!(physical_device(t.path(), "/dev/root", Some(0x0801)), "/dev/sda");
        }

        #[test]
        fn device_mapper_resolves_to_the_disks_under_it() {
            let t = tree();
            assert_eq!(
                physical_device(t.path(), "/dev/mapper/vg-small", None),
                "/dev/sda"
            );
            assert_eq!(
                physical_device(t.path(), "/dev/mapper/vg-data", None),
                "/dev/sda+/dev/sdb"
            );
            let dm1 = 253u64 << 8 | 1;
            assert_eq!(physical_device(t.path(), "whatever", Some(dm1)), "/dev/sda");
        }

        #[test]
        fn unknown_devices_fall_back_to_the_mount_name() {
            let t = tree();
            assert_eq!(physical_device(t.path(), "overlay", Some(0x0031)), "overlay");
            assert_eq!(physical_device(t.path(), "/dev/nvme9n1", None), "/dev/nvme9n1");
            assert_eq!(physical_device(t.path(), "", None), "unknown");
        }
    }
}
