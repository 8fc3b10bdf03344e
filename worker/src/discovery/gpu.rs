//! NVIDIA GPUs through NVML, loaded at run time.
//!
//! [`Nvml::init`] `dlopen`s `libnvidia-ml.so.1`; on a machine without the NVIDIA driver (or with
//! the library but no loaded kernel module) it fails, and that simply means "no GPUs": one
//! `tracing::info!` line, never an error or a panic. The init call and every device query run
//! under [`std::panic::catch_unwind`] as well, so a misbehaving driver library cannot take the
//! worker down.
//!
//! `labels_per_s` of every GPU stays 0 here: the CUDA label backend (`gpu-kernels`) arrives in a
//! later issue, and it is what will measure GPU label speed. Until then the scheduler treats a
//! GPU with 0 labels/s as unmeasured.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::{Device, Nvml};
use protocol::GpuInfo;

/// Which GPUs the worker may use (`--gpus`): `all`, `none`, or a comma-separated list of
/// indices such as `0,2`. GPUs that are not selected are still reported, with `enabled = false`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GpuSelection {
    #[default]
    All,
    None,
    /// These indices (sorted, without duplicates when parsed).
    List(Vec<u32>),
}

impl GpuSelection {
    /// Whether the GPU with this index may be used.
    pub fn is_selected(&self, index: u32) -> bool {
        match self {
            GpuSelection::All => true,
            GpuSelection::None => false,
            GpuSelection::List(list) => list.contains(&index),
        }
    }
}

/// A `--gpus` value that is neither `all`, `none` nor a list of GPU indices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid GPU selection {token:?} in {input:?}: expected \"all\", \"none\" or a comma-separated \
     list of GPU indices such as \"0,2\""
)]
pub struct GpuSelectionError {
    /// The offending token (the whole input when it is empty).
    pub token: String,
    /// The whole value as given.
    pub input: String,
}

impl FromStr for GpuSelection {
    type Err = GpuSelectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |token: &str| GpuSelectionError {
            token: token.to_string(),
            input: s.to_string(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(GpuSelection::All);
        }
        if t.eq_ignore_ascii_case("none") {
            return Ok(GpuSelection::None);
        }
        if t.is_empty() {
            return Err(err(t));
        }
        let mut set = BTreeSet::new();
        for token in t.split(',') {
            let token = token.trim();
            // `u32::from_str` accepts a leading '+'; an index is digits only.
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(token));
            }
            set.insert(token.parse::<u32>().map_err(|_| err(token))?);
        }
        Ok(GpuSelection::List(set.into_iter().collect()))
    }
}

impl fmt::Display for GpuSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelection::All => f.write_str("all"),
            GpuSelection::None => f.write_str("none"),
            GpuSelection::List(list) => {
                for (k, i) in list.iter().enumerate() {
                    if k > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{i}")?;
                }
                Ok(())
            }
        }
    }
}

/// An NVML handle, initialised once; `None` inside when the rig has no usable NVIDIA driver.
/// Keep one for the life of the worker and use it for heartbeat telemetry.
pub struct GpuProbe {
    nvml: Option<Nvml>,
}

impl fmt::Debug for GpuProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuProbe")
            .field("nvml", &self.nvml.is_some())
            .finish()
    }
}

impl Default for GpuProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl GpuProbe {
    /// Load NVML. Any failure (library missing, driver not loaded, a panic inside) leaves a
    /// probe that reports no GPUs, logged once at info level.
    pub fn new() -> Self {
        let nvml = match catch_unwind(Nvml::init) {
            Ok(Ok(nvml)) => Some(nvml),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "NVML is not available: no NVIDIA GPUs on this rig");
                None
            }
            Err(_) => {
                tracing::info!("NVML initialisation panicked: no NVIDIA GPUs on this rig");
                None
            }
        };
        GpuProbe { nvml }
    }

    /// A probe that never reports GPUs, without touching NVML (for tests and `--gpus none`
    /// setups that must not load the driver library).
    pub fn disabled() -> Self {
        GpuProbe { nvml: None }
    }

    /// Whether NVML loaded.
    pub fn available(&self) -> bool {
        self.nvml.is_some()
    }

    /// Every GPU NVML lists, in index order, with `enabled` from `selection`. A device whose
    /// queries fail is still listed with what could be read (the index is what matters).
    pub fn discover(&self, selection: &GpuSelection) -> Vec<GpuInfo> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let gpus = match catch_unwind(AssertUnwindSafe(|| list_devices(nvml, selection))) {
            Ok(gpus) => gpus,
            Err(_) => {
                tracing::warn!("an NVML query panicked: reporting no GPUs");
                Vec::new()
            }
        };
        if let GpuSelection::List(list) = selection {
            for i in list {
                if !gpus.iter().any(|g| g.index == *i) {
                    tracing::warn!(index = i, found = gpus.len(), "selected GPU does not exist");
                }
            }
        }
        gpus
    }

    /// Refresh temperature, power and utilization of `gpus` in place (cheap: three NVML queries
    /// each). A GPU NVML no longer finds gets `None` readings.
    pub fn sample_telemetry(&self, gpus: &mut [GpuInfo]) {
        let Some(nvml) = &self.nvml else {
            return;
        };
        for g in gpus.iter_mut() {
            let sampled = catch_unwind(AssertUnwindSafe(|| {
                nvml.device_by_index(g.index).ok().map(|d| telemetry(&d))
            }));
            let (t, p, u) = match sampled {
                Ok(Some(t)) => t,
                Ok(None) | Err(_) => (None, None, None),
            };
            g.temperature_c = t;
            g.power_w = p;
            g.utilization_percent = u;
        }
    }
}

/// Temperature (°C), power (W) and utilization (%), each `None` when the device cannot say.
fn telemetry(d: &Device<'_>) -> (Option<f64>, Option<f64>, Option<f64>) {
    let temperature = d.temperature(TemperatureSensor::Gpu).ok().map(f64::from);
    // NVML reports milliwatts.
    let power = d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
    let util = d.utilization_rates().ok().map(|u| f64::from(u.gpu.min(100)));
    (temperature, power, util)
}

fn list_devices(nvml: &Nvml, selection: &GpuSelection) -> Vec<GpuInfo> {
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(error = %e, "NVML cannot count devices: no NVIDIA GPUs on this rig");
            return Vec::new();
        }
    };
    let mut gpus = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(index, error = %e, "NVML cannot open GPU; skipping it");
                continue;
            }
        };
        let (temperature_c, power_w, utilization_percent) = telemetry(&device);
        gpus.push(GpuInfo {
            index,
            model: device.name().unwrap_or_default(),
            memory_bytes: device.memory_info().map(|m| m.total).unwrap_or(0),
            // Measured by the CUDA backend (a later issue); 0 = not measured.
            labels_per_s: 0.0,
            enabled: selection.is_selected(index),
            temperature_c,
            power_w,
            utilization_percent,
        });
    }
    gpus
}

/// The rig's GPUs with `enabled` from `selection`; empty without an NVIDIA driver. Loads NVML
/// for this call only: keep a [`GpuProbe`] to query again.
pub fn discover_gpus(selection: &GpuSelection) -> Vec<GpuInfo> {
    GpuProbe::new().discover(selection)
}

/// Refresh the heartbeat telemetry (temperature, power, utilization) of `gpus`.
pub fn sample_gpu_telemetry(probe: &GpuProbe, gpus: &mut [GpuInfo]) {
    probe.sample_telemetry(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        for s in ["all", "none", "0", "0,2,7"] {
            let sel: GpuSelection = s.parse().expect("parses");
            assert_eq!(sel.to_string(), s);
        }
    }

    #[test]
    fn list_is_sorted_and_deduplicated() {
        let sel: GpuSelection = " 3, 1 ,3,0 ".parse().expect("parses");
        assert_eq!(sel, GpuSelection::List(vec![0, 1, 3]));
        assert!(sel.is_selected(1));
        assert!(!sel.is_selected(2));
    }

    #[test]
    fn plus_sign_and_overflow_are_rejected() {
        assert_eq!(
            "+1".parse::<GpuSelection>().map_err(|e| e.token),
            Err("+1".to_string())
        );
        assert_eq!(
            "0,4294967296".parse::<GpuSelection>().map_err(|e| e.token),
            Err("4294967296".to_string())
        );
    }

    #[test]
    fn disabled_probe_reports_nothing() {
        let p = GpuProbe::disabled();
        assert!(!p.available());
        assert!(p.discover(&GpuSelection::All).is_empty());
        let mut none: Vec<GpuInfo> = Vec::new();
        p.sample_telemetry(&mut none);
    }
}
