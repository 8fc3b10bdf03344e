//! The prove executor: one proving pass over an identity's data for nonces
//! `[first_nonce, first_nonce + nonces)`, with the k2pow of each of the pass's nonce groups given
//! by the coordinator (from finished k2pow jobs).
//!
//! The identity's files may be spread over several disks of the rig
//! (`<disk>/smeshfleet/<node id>/postdata_<k>.bin`, possibly links to one another): every file
//! number is looked up on every disk of the job, and the files are read by post's
//! [`post::reader`], one reader thread per physical device, so that all disks stream at once.
//! The proof is the one post's single-threaded prover finds over the same files in one
//! directory, whatever the placement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use post::data::{list_files, Layout, LABEL_SIZE};
use post::difficulty::scale_pow_difficulty;
use post::metadata::PostMetadata;
use post::pow::{challenge8, PowError, PowVerifier};
use post::proof::ProofConfig;
use post::prove::ProveProgress;
use post::reader::{scan_pass_files, FileSource, StripedData};
use protocol::{DiskInfo, GroupPow, IdentityParams, ProofData, ProofMeta, ProveResult};

use super::init::metadata_for;
use super::{identity_dir, parse32, ExecError};

/// One prove job, resolved to files on this rig.
#[derive(Debug, Clone)]
pub struct ProveTask {
    pub identity: IdentityParams,
    pub challenge: [u8; 32],
    pub first_nonce: u32,
    pub nonces: u32,
    /// The pow of every group of the pass, in group order.
    pub pows: Vec<u64>,
    pub files: Vec<FileSource>,
    /// Scanning threads (`--cpu-threads`); the readers, one per device, mostly wait on I/O.
    pub threads: usize,
}

impl ProveTask {
    /// Checks the job and finds its files on `disks`. `pows` may list other groups too; every
    /// group of the pass must be there.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: &IdentityParams,
        challenge: Option<&str>,
        first_nonce: u32,
        nonces: u32,
        pows: &[GroupPow],
        disks: &[&DiskInfo],
        threads: usize,
    ) -> Result<Self, ExecError> {
        let challenge =
            challenge.ok_or_else(|| ExecError::Invalid("prove job without a challenge".into()))?;
        let challenge = parse32("challenge", challenge)?;
        if nonces == 0 || !nonces.is_multiple_of(16) || !first_nonce.is_multiple_of(16) {
            return Err(ExecError::Invalid(format!(
                "nonces [{first_nonce}, +{nonces}) must start at a multiple of 16 and be a non-zero multiple of 16"
            )));
        }
        let first_group = first_nonce / 16;
        let groups = nonces / 16;
        if u64::from(first_group) + u64::from(groups) > 256 {
            return Err(ExecError::Invalid(format!(
                "nonce groups [{first_group}, {}) go past group 255",
                u64::from(first_group) + u64::from(groups)
            )));
        }
        let given: BTreeMap<u32, u64> = pows.iter().map(|p| (p.group, p.pow)).collect();
        let pows = (first_group..first_group + groups)
            .map(|g| {
                given.get(&g).copied().ok_or_else(|| {
                    ExecError::Invalid(format!(
                        "no k2pow for nonce group {g}: the lease must carry the pow of every group of the pass"
                    ))
                })
            })
            .collect::<Result<Vec<u64>, ExecError>>()?;
        if disks.is_empty() {
            return Err(ExecError::Invalid("prove job without a disk".into()));
        }
        let md = metadata_for(identity)?;
        let files = find_files(disks, &identity.node_id, &md)?;
        Ok(Self {
            identity: identity.clone(),
            challenge,
            first_nonce,
            nonces,
            pows,
            files,
            threads: threads.max(1),
        })
    }
}

/// Every `postdata_<k>.bin` of the identity on `disks`, each with the physical device it is on.
///
/// A file reached from several disks (a link to another disk's file) is listed once, on the disk
/// that holds it. Every directory's metadata, where there is one, must be this identity's.
pub fn find_files(
    disks: &[&DiskInfo],
    node_id: &str,
    md: &PostMetadata,
) -> Result<Vec<FileSource>, ExecError> {
    let mounts: Vec<(PathBuf, &DiskInfo)> = disks
        .iter()
        .map(|d| {
            (
                std::fs::canonicalize(&d.mount).unwrap_or_else(|_| PathBuf::from(&d.mount)),
                *d,
            )
        })
        .collect();
    let device_of = |canonical: &Path, fallback: &DiskInfo| -> String {
        let holder = mounts
            .iter()
            .filter(|(m, _)| canonical.starts_with(m))
            .max_by_key(|(m, _)| m.components().count())
            .map_or(fallback, |(_, d)| *d);
        device_name(holder)
    };
    let mut seen: BTreeMap<PathBuf, ()> = BTreeMap::new();
    let mut out = Vec::new();
    for disk in disks {
        let dir = identity_dir(disk, node_id);
        if !dir.is_dir() {
            continue;
        }
        check_metadata(&dir, md)?;
        let listed = list_files(&dir).map_err(|e| ExecError::Io {
            step: "listing",
            path: dir.clone(),
            source: match e {
                post::data::LayoutError::List { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
        for (k, path) in listed {
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.insert(canonical.clone(), ()).is_some() {
                continue;
            }
            out.push(FileSource {
                index: k,
                device: device_of(&canonical, disk),
                path,
            });
        }
    }
    Ok(out)
}

/// The device key readers are grouped by: the physical device, or the disk itself when
/// discovery could not tell.
fn device_name(d: &DiskInfo) -> String {
    if d.physical_device.is_empty() {
        format!("disk:{}", d.id)
    } else {
        d.physical_device.clone()
    }
}

/// A directory with another identity's or layout's metadata is refused (its files are not ours).
fn check_metadata(dir: &Path, md: &PostMetadata) -> Result<(), ExecError> {
    match PostMetadata::load(dir).map_err(|e| ExecError::Metadata(e.to_string()))? {
        Some(m)
            if m.node_id != md.node_id
                || m.commitment_atx_id != md.commitment_atx_id
                || m.labels_per_unit != md.labels_per_unit
                || m.num_units != md.num_units
                || m.max_file_size != md.max_file_size =>
        {
            Err(ExecError::Invalid(format!(
                "{} holds another identity's or layout's metadata",
                dir.display()
            )))
        }
        _ => Ok(()),
    }
}

/// Runs the pass. Each given pow is checked first (one RandomX hash each) when `verifier` is
/// given: a bad pow would only give a proof the network rejects, after a whole pass over the
/// data. `progress` gets the labels read so far.
pub fn run_prove(
    task: &ProveTask,
    cfg: &ProofConfig,
    verifier: Option<&dyn PowVerifier>,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ProveResult, ExecError> {
    let id = &task.identity;
    let md = metadata_for(id)?;
    let layout = Layout::new(id.num_units, id.labels_per_unit, id.max_file_size)
        .map_err(|e| ExecError::Invalid(e.to_string()))?;
    if let Some(v) = verifier {
        let scaled = scale_pow_difficulty(&cfg.pow_difficulty, id.num_units)
            .map_err(|e| ExecError::Invalid(format!("pow difficulty: {e}")))?;
        let c8 = challenge8(&task.challenge);
        for (g, &pow) in (task.first_nonce / 16..).zip(&task.pows) {
            match v.verify(pow, g as u8, &c8, &md.node_id, &scaled) {
                Ok(()) => {}
                Err(e @ PowError::InvalidPow { .. }) => {
                    return Err(ExecError::Invalid(format!(
                        "the k2pow given for nonce group {g} is not valid: {e}"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let data = StripedData::open(layout, &task.files)?;
    let on_progress = |p: ProveProgress| {
        if let ProveProgress::Scan { bytes_done, .. } = p {
            progress(bytes_done / LABEL_SIZE);
        }
    };
    let outcome = scan_pass_files(
        &data,
        &task.challenge,
        cfg,
        task.first_nonce,
        &task.pows,
        task.threads,
        &on_progress,
        stop,
    )?;
    let proof = match outcome.proof {
        // post's Proof and ProofData have the same JSON form; going through it keeps them so.
        Some(p) => Some(
            serde_json::to_value(&p)
                .and_then(serde_json::from_value::<ProofData>)
                .map_err(|e| ExecError::Invalid(format!("proof encoding: {e}")))?,
        ),
        None => None,
    };
    Ok(ProveResult {
        found: proof.is_some(),
        proof,
        metadata: ProofMeta {
            node_id: hex::encode(md.node_id),
            commitment_atx_id: hex::encode(md.commitment_atx_id),
            challenge: hex::encode(task.challenge),
            num_units: md.num_units,
            labels_per_unit: md.labels_per_unit,
        },
        first_nonce: task.first_nonce,
        nonces: task.nonces,
        labels_read: outcome.bytes_scanned / LABEL_SIZE,
    })
}
