//! Every metric the coordinator exports, declared in one place (conventions item 13).
//! Names follow `smeshfleet_<area>_<name>_<unit>`; Grafana dashboards and alert rules may use
//! only the names listed in [`METRIC_NAMES`] (a test checks them).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub worker: String,
    pub device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// The names exported (without the `_total`/`_bucket` suffixes Prometheus adds).
pub const METRIC_NAMES: &[&str] = &[
    "smeshfleet_identities",
    "smeshfleet_jobs",
    "smeshfleet_workers",
    "smeshfleet_worker_last_heartbeat_timestamp_seconds",
    "smeshfleet_init_labels_written_total",
    "smeshfleet_device_labels_per_second",
    "smeshfleet_proof_duration_seconds",
    "smeshfleet_proofs_failed_total",
    "smeshfleet_proofs_verified_total",
    "smeshfleet_lease_expiries_total",
    "smeshfleet_api_request_duration_seconds",
];

pub struct Metrics {
    registry: Mutex<Registry>,
    pub identities: Family<StateLabel, Gauge>,
    pub jobs: Family<JobLabels, Gauge>,
    pub workers: Family<StateLabel, Gauge>,
    pub worker_heartbeat: Family<WorkerLabel, Gauge<f64, AtomicU64>>,
    pub labels_written: Counter,
    pub device_labels_per_second: Family<DeviceLabels, Gauge<f64, AtomicU64>>,
    pub proof_duration: Histogram,
    pub proofs_failed: Counter,
    /// Proofs the coordinator verified and stored.
    pub proofs_verified: Counter,
    pub lease_expiries: Counter,
    pub api_latency: Family<ApiLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let identities = Family::<StateLabel, Gauge>::default();
        r.register(
            "smeshfleet_identities",
            "Identities by lifecycle state",
            identities.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        r.register("smeshfleet_jobs", "Jobs by kind and state", jobs.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        r.register("smeshfleet_workers", "Workers by state", workers.clone());
        let worker_heartbeat = Family::<WorkerLabel, Gauge<f64, AtomicU64>>::default();
        r.register(
            "smeshfleet_worker_last_heartbeat_timestamp_seconds",
            "Unix time of each worker's last heartbeat",
            worker_heartbeat.clone(),
        );
        let labels_written = Counter::default();
        r.register(
            "smeshfleet_init_labels_written",
            "Labels reported written and counted done",
            labels_written.clone(),
        );
        let device_labels_per_second = Family::<DeviceLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "smeshfleet_device_labels_per_second",
            "Measured label rate per worker device (GPU or CPU)",
            device_labels_per_second.clone(),
        );
        let proof_duration = Histogram::new(exponential_buckets(1.0, 2.0, 18));
        r.register(
            "smeshfleet_proof_duration_seconds",
            "Wall time of completed proofs",
            proof_duration.clone(),
        );
        let proofs_failed = Counter::default();
        r.register(
            "smeshfleet_proofs_failed",
            "Proof jobs that failed",
            proofs_failed.clone(),
        );
        let proofs_verified = Counter::default();
        r.register(
            "smeshfleet_proofs_verified",
            "Proofs the coordinator verified and stored",
            proofs_verified.clone(),
        );
        let lease_expiries = Counter::default();
        r.register(
            "smeshfleet_lease_expiries",
            "Job leases that expired and went back to the queue",
            lease_expiries.clone(),
        );
        let api_latency = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        r.register(
            "smeshfleet_api_request_duration_seconds",
            "API request latency",
            api_latency.clone(),
        );
        Self {
            registry: Mutex::new(r),
            identities,
            jobs,
            workers,
            worker_heartbeat,
            labels_written,
            device_labels_per_second,
            proof_duration,
            proofs_failed,
            proofs_verified,
            lease_expiries,
            api_latency,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_name_is_exported_and_nothing_else() {
        let m = Metrics::new();
        m.identities
            .get_or_create(&StateLabel {
                state: "ready".into(),
            })
            .set(1);
        m.jobs
            .get_or_create(&JobLabels {
                kind: "init".into(),
                state: "queued".into(),
            })
            .set(2);
        m.workers
            .get_or_create(&StateLabel {
                state: "online".into(),
            })
            .set(1);
        m.worker_heartbeat
            .get_or_create(&WorkerLabel { worker: "w".into() })
            .set(1.0);
        m.device_labels_per_second
            .get_or_create(&DeviceLabels {
                worker: "w".into(),
                device: "gpu0".into(),
            })
            .set(5.0);
        m.api_latency
            .get_or_create(&ApiLabels {
                method: "GET".into(),
                route: "/x".into(),
                status: "200".into(),
            })
            .observe(0.01);
        let text = m.render();
        for name in METRIC_NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} "))
                    || text.contains(&format!("# TYPE {} ", name.trim_end_matches("_total"))),
                "{name} missing:\n{text}"
            );
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(name.starts_with("smeshfleet_"), "{name}");
            assert!(
                METRIC_NAMES.iter().any(|n| n.trim_end_matches("_total") == name),
                "{name} is exported but not declared in METRIC_NAMES"
            );
        }
    }
}
