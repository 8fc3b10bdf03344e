//! Discovery on the machine the tests run on: disks in temporary directories, the CPU measured
//! briefly, GPUs only where an NVIDIA driver exists (elsewhere: none, and no panic).

use std::path::{Path, PathBuf};
use std::time::Duration;

use worker::discovery::{
    cpu, discover, discover_gpus, disk, refresh, DiscoveryError, DiscoveryOptions, GpuProbe, GpuSelection,
};

/// Temporary directories under the target directory: a real disk even where /tmp is a tmpfs.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

fn quick(disks: Vec<PathBuf>) -> DiscoveryOptions {
    DiscoveryOptions {
        disks,
        gpus: GpuSelection::None,
        measure: false,
        ..DiscoveryOptions::default()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn gpus_without_a_driver_are_none_and_never_panic() {
    let probe = GpuProbe::new();
    let gpus = probe.discover(&GpuSelection::All);
    if !probe.available() {
        assert!(gpus.is_empty());
        assert!(discover_gpus(&GpuSelection::All).is_empty());
    }
    // Where a driver exists: unique indices, selection honoured, no GPU label rate yet.
    let mut idx: Vec<u32> = gpus.iter().map(|g| g.index).collect();
    idx.dedup();
    assert_eq!(idx.len(), gpus.len());
    assert!(gpus.iter().all(|g| g.enabled && g.labels_per_s == 0.0));
    let none = probe.discover(&GpuSelection::None);
    assert!(none.iter().all(|g| !g.enabled));
    let only0 = probe.discover(&GpuSelection::List(vec![0]));
    assert!(only0.iter().all(|g| g.enabled == (g.index == 0)));
    let mut sampled = gpus.clone();
    probe.sample_telemetry(&mut sampled);
    assert_eq!(sampled.len(), gpus.len());
}

#[test]
fn gpu_selection_parses() {
    assert_eq!("all".parse::<GpuSelection>(), Ok(GpuSelection::All));
    assert_eq!(" ALL ".parse::<GpuSelection>(), Ok(GpuSelection::All));
    assert_eq!("none".parse::<GpuSelection>(), Ok(GpuSelection::None));
    assert_eq!("0,2".parse::<GpuSelection>(), Ok(GpuSelection::List(vec![0, 2])));
    assert_eq!(
        "2,0,2".parse::<GpuSelection>(),
        Ok(GpuSelection::List(vec![0, 2]))
    );
    assert_eq!("7".parse::<GpuSelection>(), Ok(GpuSelection::List(vec![7])));
    for (input, token) in [
        ("0,x", "x"),
        ("0,,1", ""),
        ("", ""),
        ("-1", "-1"),
        ("1.5", "1.5"),
        ("all,0", "all"),
        ("0,99999999999", "99999999999"),
    ] {
        let e = input.parse::<GpuSelection>().expect_err(input);
        assert_eq!(e.token, token, "{input}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("{token:?}")), "{msg}");
    }
}

#[test]
fn two_directories_on_one_file_system_share_mount_and_device() {
    let t = tempdir();
    let a = t.path().join("a");
    let b = t.path().join("nested/b");
    let caps = discover(&quick(vec![a.clone(), b.clone()])).expect("discover");
    assert!(a.is_dir() && b.is_dir(), "directories are created");
    assert_eq!(caps.disks.len(), 2);
    let (da, db) = (&caps.disks[0], &caps.disks[1]);
    assert_ne!(da.mount, db.mount, "mount is each disk's data directory");
    assert_eq!(da.physical_device, db.physical_device);
    assert_eq!(da.filesystem, db.filesystem);
    assert!(!da.physical_device.is_empty() && !da.filesystem.is_empty());
    assert_ne!(da.id, db.id);
    assert_eq!(da.id.len(), 16);
    assert!(Path::new(&da.mount).is_absolute());
    assert_eq!(Path::new(&da.mount), std::fs::canonicalize(&a).expect("canon"));
    for d in &caps.disks {
        assert!(d.free_bytes <= d.capacity_bytes, "{d:?}");
        assert!(d.capacity_bytes > 0, "{d:?}");
        assert_eq!((d.read_mb_s, d.write_mb_s), (0.0, 0.0));
    }
    assert_eq!((caps.cpu.labels_per_s, caps.cpu.randomx_hashes_per_s), (0.0, 0.0));
    assert_eq!(caps.cpu.proving_mib_s_per_16_nonces, 0.0);
    assert!(caps.cpu.threads >= 1);
    assert!(!caps.hostname.is_empty());
    assert_eq!(caps.version, env!("CARGO_PKG_VERSION"));
    caps.validate().expect("valid capabilities");
    // Probe files are gone.
    assert!(entries(&a).is_empty() && entries(&b).is_empty());

    // Ids are stable across runs; the same directory twice is refused.
    let again = discover(&quick(vec![a.clone()])).expect("discover");
    assert_eq!(again.disks[0].id, da.id);
    let e = discover(&quick(vec![a.clone(), t.path().join("a/../a")])).expect_err("duplicate");
    assert!(matches!(e, DiscoveryError::DuplicateDisk { .. }), "{e}");

    // The heartbeat refresh keeps ids and rates and re-reads the sizes.
    let mut refreshed = caps.clone();
    refresh(&mut refreshed, &GpuProbe::disabled());
    assert_eq!(refreshed.disks.len(), 2);
    for (r, d) in refreshed.disks.iter().zip(&caps.disks) {
        assert_eq!(
            (&r.id, &r.mount, r.capacity_bytes),
            (&d.id, &d.mount, d.capacity_bytes)
        );
        assert!(r.free_bytes <= r.capacity_bytes);
    }
}

#[test]
fn measurements_are_positive_and_leave_no_files() {
    let t = tempdir();
    let dir = t.path().join("disk");
    let opts = DiscoveryOptions {
        disks: vec![dir.clone()],
        gpus: GpuSelection::None,
        cpu_threads: Some(2),
        cpu_init: true,
        measure: true,
        scrypt_n: 16,
        measure_seconds: 0.2,
        disk_test_bytes: 8 << 20,
        ..DiscoveryOptions::default()
    };
    let caps = discover(&opts).expect("discover");
    let d = &caps.disks[0];
    assert!(d.write_mb_s > 0.0 && d.write_mb_s.is_finite(), "{d:?}");
    assert!(d.read_mb_s > 0.0 && d.read_mb_s.is_finite(), "{d:?}");
    assert!(caps.cpu.labels_per_s > 0.0, "{:?}", caps.cpu);
    assert!(caps.cpu.randomx_hashes_per_s > 0.0, "{:?}", caps.cpu);
    assert!(caps.cpu.proving_mib_s_per_16_nonces > 0.0, "{:?}", caps.cpu);
    assert!(caps.cpu.init_enabled);
    assert!(caps.cpu.threads <= 2);
    caps.validate().expect("valid capabilities");
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
    eprintln!("measured (N = 16, 0.2 s): {:?} / {d:?}", caps.cpu);
}

#[test]
fn disk_test_removes_its_file_and_reports_sizes() {
    let t = tempdir();
    let s = disk::measure_disk(t.path(), 5000, Duration::from_secs(5)).expect("measure");
    assert_eq!(s.bytes, 8192, "rounded up to 4 KiB");
    assert!(s.write_mb_s > 0.0 && s.read_mb_s > 0.0);
    assert!(entries(t.path()).is_empty());
    // A directory that does not exist: a write-test error naming it, and nothing created.
    let missing = t.path().join("missing");
    let e = disk::measure_disk(&missing, 4096, Duration::from_secs(1)).expect_err("missing dir");
    assert!(matches!(e, DiscoveryError::WriteTest { .. }), "{e}");
    assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    assert!(entries(t.path()).is_empty());
}

#[test]
fn bad_disk_paths_are_errors_naming_the_path() {
    let t = tempdir();
    let file = t.path().join("file");
    std::fs::write(&file, b"x").expect("write");

    // A path below a file cannot be created.
    let below = file.join("disk");
    let e = discover(&quick(vec![below.clone()])).expect_err("below a file");
    assert!(matches!(e, DiscoveryError::CreateDir { .. }), "{e}");
    assert_eq!(e.path(), Some(below.as_path()));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("disk {}: creating the directory: ", below.display())),
        "{msg}"
    );

    // A file is not a directory.
    let e = discover(&quick(vec![file.clone()])).expect_err("a file");
    assert!(matches!(e, DiscoveryError::NotADirectory { .. }), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");

    // A read-only location: sysfs refuses new directories even to root.
    if Path::new("/sys/class").is_dir() {
        let ro = PathBuf::from("/sys/smeshfleet-discovery-test/disk");
        let e = discover(&quick(vec![ro.clone()])).expect_err("read-only");
        assert_eq!(e.path(), Some(ro.as_path()), "{e}");
        assert!(
            e.to_string().contains("/sys/smeshfleet-discovery-test/disk"),
            "{e}"
        );
    }

    // A read-only directory (permission bits; root ignores them, so only checked when they bite).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = t.path().join("ro");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let bites = std::fs::write(ro.join("try"), b"").is_err();
        let _ = std::fs::remove_file(ro.join("try"));
        if bites {
            let e = discover(&quick(vec![ro.clone()])).expect_err("read-only dir");
            assert!(matches!(e, DiscoveryError::NotWritable { .. }), "{e}");
            let e = discover(&quick(vec![ro.join("sub")])).expect_err("below read-only dir");
            assert!(matches!(e, DiscoveryError::CreateDir { .. }), "{e}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn bad_options_are_refused() {
    for opts in [
        DiscoveryOptions {
            scrypt_n: 1000,
            ..quick(vec![])
        },
        DiscoveryOptions {
            measure_seconds: 0.0,
            ..quick(vec![])
        },
        DiscoveryOptions {
            measure_seconds: f64::NAN,
            ..quick(vec![])
        },
        DiscoveryOptions {
            disk_test_bytes: 0,
            ..quick(vec![])
        },
    ] {
        let e = discover(&opts).expect_err("bad option");
        assert!(matches!(e, DiscoveryError::BadOption { .. }), "{e}");
    }
}

/// Calibration of [`cpu::RANDOMX_LIGHT_TO_FAST`]: builds the 2 GiB fast-mode dataset (a minute
/// or more). `cargo test -p worker --test discovery -- --ignored --nocapture`.
#[test]
#[ignore = "builds the 2 GiB RandomX dataset"]
fn randomx_light_to_fast_ratio() {
    use post::pow::RandomXMode;
    let threads = cpu::cpu_threads(None);
    let d = Duration::from_secs(5);
    let light = cpu::measure_randomx(threads, RandomXMode::Light, d).expect("light");
    let t = std::time::Instant::now();
    let fast = cpu::measure_randomx(threads, RandomXMode::Fast, d).expect("fast");
    eprintln!(
        "threads {threads}: light {:.1} H/s, fast {:.1} H/s (with {:.0} s set-up), ratio {:.2}, \
         light estimate {:.1} H/s",
        light.measured,
        fast.measured,
        t.elapsed().as_secs_f64() - 5.0,
        fast.measured / light.measured,
        light.fast_equivalent
    );
}

/// The figures a worker would report on this machine with the default options (N = 8192,
/// 2 s per measurement, a 256 MiB disk test in a temporary directory).
/// `cargo test -p worker --test discovery -- --ignored --nocapture`.
#[test]
#[ignore = "runs the full-length measurements (about 10 s)"]
fn report_default_measurements() {
    let t = tempdir();
    let opts = DiscoveryOptions {
        disks: vec![t.path().join("disk")],
        ..DiscoveryOptions::default()
    };
    let start = std::time::Instant::now();
    let caps = discover(&opts).expect("discover");
    eprintln!(
        "{:.1} s: {}",
        start.elapsed().as_secs_f64(),
        serde_json::to_string_pretty(&caps).expect("json")
    );
}

/// tmpfs: sysinfo does not list it, so the mount comes from /proc/self/mounts with unknown
/// sizes; the read test works whether or not the kernel allows O_DIRECT there.
#[test]
fn tmpfs_is_found_through_proc_mounts() {
    let shm = Path::new("/dev/shm");
    let is_tmpfs = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.starts_with("tmpfs /dev/shm ")))
        .unwrap_or(false);
    if !is_tmpfs {
        return;
    }
    let t = tempfile::tempdir_in(shm).expect("tempdir");
    let caps = discover(&quick(vec![t.path().join("d")])).expect("discover");
    let d = &caps.disks[0];
    assert!(d.mount.starts_with("/dev/shm/"), "{}", d.mount);
    assert_eq!(d.filesystem, "tmpfs");
    assert_eq!(d.physical_device, "tmpfs");
    let s = disk::measure_disk(t.path(), 1 << 20, Duration::from_secs(1)).expect("measure");
    // Kernels before 6.6 refuse O_DIRECT on tmpfs (the buffered fallback); later ones allow it.
    eprintln!("tmpfs read with O_DIRECT: {}", s.read_direct);
    assert!(s.read_mb_s > 0.0 && s.write_mb_s > 0.0);
    assert!(entries(t.path()) == ["d"], "{:?}", entries(t.path()));
}
