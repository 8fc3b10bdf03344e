//! Durable storage for the devnet: [`Devnet::open`] and [`Devnet::save`].
//!
//! A devnet opened from a directory keeps three files there:
//!
//! - `snapshot.bin`: the `State` at the last [`Devnet::save`] (everything but the ATXs, which
//!   are immutable and live in the ATX log): PoET rounds (open registrations, running rounds'
//!   members, finished rounds' statements, members and SCALE proofs), active sets, accepted
//!   ballots (encoded, in acceptance order), accounts,
//!   mempool, receipts, layer rewards and events of the kept epochs, event numbering, time,
//!   next layer, the config fingerprint, a generation number and how many ATX-log records it
//!   covers. Written atomically: `snapshot.bin.tmp`, fsync, rename, fsync of the directory.
//! - `atxs.bin`: append-only log of accepted ATXs in acceptance order (network bytes plus the
//!   values validation derived, so nothing is re-validated on open). `save()` appends the ATXs
//!   accepted since the last save (fsync) before it writes the snapshot; records beyond the
//!   snapshot's count (a save that died before its rename) are cut off on open, and the
//!   journal then brings those ATXs back.
//! - `journal.bin`: the inputs since the snapshot, in order: `advance(t)`, PoET registrations,
//!   ATX submissions (network bytes), new transactions (raw bytes) and accepted ballots
//!   (encoded; a rejected ballot changes nothing and is not journaled), each with the devnet time
//!   it happened at. A header names the snapshot generation the journal follows; a journal of an
//!   older generation (a save that died after the snapshot's rename) is stale and replaced.
//!   Input records are fsynced before the input's caller gets its answer; `advance` records are
//!   only written (a lost one costs time the caller re-advances, nothing else).
//!
//! Every file is `magic (8 bytes)` then records `u32le length ‖ blake3(payload)[0..8] ‖
//! payload`, payloads being JSON (the first record of the journal and the ATX log is a
//! header). A record cut short at the end of a file (a torn write) is dropped and the file
//! truncated to the last whole record; a record whose checksum fails with more data after it,
//! or any damage to the snapshot, is a [`DevnetError::Corrupt`] naming the file.
//!
//! **Why this shape.** Open cost is: parse the snapshot (bounded by `retain_epochs`, like the
//! memory), parse the ATX log (linear in ATXs, a few µs each, no crypto: the same ATXs the
//! memory holds), replay the journal (bounded by how often `save()` runs), and recompute the
//! sequential work of each PoET round in progress (at most one round per PoET: ≈ 1 s of CPU at
//! 1,000 leaves/s, depth 400). Nothing replays past epochs. `save()` writes only the bounded
//! snapshot plus the new ATXs, so its cost does not grow with the chain's age either.
//!
//! The devnet is deterministic, so replaying the journal's inputs at their times over the
//! snapshot reproduces the state exactly (advancing in steps equals advancing at once).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use post::pow::{PowVerifier, RandomXMode, RandomXOptions, RandomXPow};
use serde::{Deserialize, Serialize};

use super::snapshot::{AtxRecord, Snapshot};
use super::{Devnet, DevnetConfig, DevnetError, State};
use crate::atx::{ActivationTxV1, Scale};
use crate::ballot::Ballot;
use crate::bridge::PoetId;
use crate::poet::Registration;

const SNAPSHOT: &str = "snapshot.bin";
const JOURNAL: &str = "journal.bin";
const ATXS: &str = "atxs.bin";
/// Format 2: ballots (and active sets without per-layer eligibility). Format 1 is refused.
const MAGIC_SNAPSHOT: &[u8; 8] = b"SFDNSNP2";
const MAGIC_SNAPSHOT_V1: &[u8; 8] = b"SFDNSNP1";
const MAGIC_JOURNAL: &[u8; 8] = b"SFDNJRN1";
const MAGIC_ATXS: &[u8; 8] = b"SFDNATX1";
/// Largest record accepted on read (a PoET proof is ≈ 170 KB; a snapshot a few MB).
const MAX_RECORD: u32 = 1 << 30;
/// Largest record of the journal and the ATX log (an ATX or a transaction with its framing is a
/// few KB): a longer length is damage, not a torn tail.
const MAX_LOG_RECORD: u32 = 4 << 20;

/// `N` bytes, as hex in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H<const N: usize>(pub [u8; N]);

impl<const N: usize> Serialize for H<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for H<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        let a: [u8; N] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes of hex")))?;
        Ok(H(a))
    }
}

/// Bytes of any length, as hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Bytes).map_err(serde::de::Error::custom)
    }
}

/// One journaled input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Input {
    /// Time moved to the record's time.
    Advance,
    PoetRegister {
        poet: String,
        node_id: H<32>,
        challenge: H<32>,
        signature: H<64>,
        /// `(seconds, nanoseconds)` since the Unix epoch.
        deadline: Option<(u64, u32)>,
    },
    SubmitAtx {
        atx: Bytes,
    },
    SubmitTx {
        raw: Bytes,
    },
    /// An accepted ballot (its encoding).
    SubmitBallot {
        ballot: Bytes,
    },
}

impl Input {
    pub(super) fn poet_register(poet: &PoetId, r: &Registration) -> Input {
        Input::PoetRegister {
            poet: poet.0.clone(),
            node_id: H(r.node_id),
            challenge: H(r.challenge),
            signature: H(r.signature),
            deadline: r.deadline.map(|d| {
                let d = d.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
                (d.as_secs(), d.subsec_nanos())
            }),
        }
    }

    pub(super) fn submit_atx(atx: &ActivationTxV1) -> Input {
        Input::SubmitAtx {
            atx: Bytes(atx.to_bytes()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    t: u64,
    input: Input,
}

#[derive(Serialize, Deserialize)]
struct Header {
    fingerprint: H<32>,
    generation: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    fingerprint: H<32>,
    config: String,
    generation: u64,
    atx_count: u64,
    state: Snapshot,
}

/// The open files of a persistent devnet.
#[derive(Debug)]
pub(super) struct Persist {
    dir: PathBuf,
    fingerprint: [u8; 32],
    config: String,
    generation: u64,
    journal: File,
    atxs: File,
    atx_count: u64,
    /// Set when a write left the journal unusable (a partial record that could not be cut off,
    /// or a save that replaced the snapshot but not the journal): inputs are refused durability
    /// until a save succeeds.
    broken: Option<String>,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> DevnetError + 'a {
    move |source| DevnetError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DevnetError {
    DevnetError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A one-line description of the config, for mismatch errors.
fn describe(cfg: &DevnetConfig) -> String {
    format!(
        "genesis {} ms, golden ATX {}, PoETs {:?}, retain {} epochs",
        cfg.clock.genesis_ms,
        hex::encode(cfg.golden_atx),
        cfg.poets.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        cfg.retain_epochs
    )
}

/// blake3 of the config's `Debug` form: any difference in any parameter changes it.
fn fingerprint(cfg: &DevnetConfig) -> [u8; 32] {
    *blake3::hash(format!("smeshfleet devnet v1 {cfg:?}").as_bytes()).as_bytes()
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&blake3::hash(payload).as_bytes()[..8]);
    out.extend_from_slice(payload);
}

fn json_frame<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), DevnetError> {
    let payload = serde_json::to_vec(v).map_err(|e| DevnetError::Encode(e.to_string()))?;
    frame(&payload, out);
    Ok(())
}

/// A record cut
/// short at the end, or a final record whose checksum fails, is a torn tail (left out); a bad
/// record with data after it is corruption.
type Records<'a> = Vec<(&'a [u8], usize)>;

/// The whole records of a file after its magic, each with the byte offset it ends at, and the
/// offset the last whole record ends at.
fn records<'a>(path: &Path, bytes: &'a [u8], magic: &[u8; 8]) -> Result<(Records<'a>, usize), DevnetError> {
    if bytes.get(..8) != Some(&magic[..]) {
        return Err(corrupt(path, "not a devnet file of this kind (bad magic)"));
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + 12) else {
            break;
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[..4]);
        let len = u32::from_le_bytes(len);
        let max = if magic == MAGIC_SNAPSHOT {
            MAX_RECORD
        } else {
            MAX_LOG_RECORD
        };
        if len > max {
            return Err(corrupt(path, format!("record at byte {pos} claims {len} bytes")));
        }
        let end = pos + 12 + len as usize;
        let Some(payload) = bytes.get(pos + 12..end) else {
            break;
        };
        if blake3::hash(payload).as_bytes()[..8] != head[4..12] {
            if end == bytes.len() {
                break;
            }
            return Err(corrupt(
                path,
                format!("checksum of the record at byte {pos} fails"),
            ));
        }
        out.push((payload, end));
        pos = end;
    }
    Ok((out, pos))
}

fn parse<'a, T: Deserialize<'a>>(path: &Path, payload: &'a [u8], what: &str) -> Result<T, DevnetError> {
    serde_json::from_slice(payload).map_err(|e| corrupt(path, format!("{what}: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, DevnetError> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .map_err(io(path, "read"))?;
    Ok(v)
}

fn sync_dir(dir: &Path) -> Result<(), DevnetError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync directory"))
}

/// `bytes` to `dir/name` atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DevnetError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io(&tmp, "create"))?;
    f.write_all(bytes).map_err(io(&tmp, "write"))?;
    f.sync_all().map_err(io(&tmp, "fsync"))?;
    std::fs::rename(&tmp, &path).map_err(io(&path, "rename into place"))?;
    sync_dir(dir)
}

fn open_append(path: &Path) -> Result<File, DevnetError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(path, "open for append"))
}

/// Cuts `path` to `len` bytes (a torn or uncommitted tail) and opens it for appending.
fn truncate_and_append(path: &Path, len: usize) -> Result<File, DevnetError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path, "open"))?;
    f.set_len(len as u64).map_err(io(path, "truncate"))?;
    f.sync_all().map_err(io(path, "fsync"))?;
    open_append(path)
}

impl Persist {
    fn header(&self, magic: &[u8; 8]) -> Result<Vec<u8>, DevnetError> {
        let mut out = magic.to_vec();
        json_frame(
            &Header {
                fingerprint: H(self.fingerprint),
                generation: self.generation,
            },
            &mut out,
        )?;
        Ok(out)
    }

    fn check_header(&self, path: &Path, first: Option<&(&[u8], usize)>) -> Result<u64, DevnetError> {
        let (payload, _) = first.ok_or_else(|| corrupt(path, "no header"))?;
        let h: Header = parse(path, payload, "header")?;
        if h.fingerprint.0 != self.fingerprint {
            return Err(corrupt(path, "written by a devnet of another config"));
        }
        Ok(h.generation)
    }

    /// Appends a journal record; fsyncs it if `sync`. A failed write is cut off again, so the
    /// journal never holds a partial record followed by whole ones; if that fails too, the
    /// journal is broken until the next successful save.
    pub(super) fn append(&mut self, t: u64, input: Input, sync: bool) -> Result<(), DevnetError> {
        let path = self.dir.join(JOURNAL);
        if let Some(why) = &self.broken {
            return Err(io(&path, "append")(std::io::Error::other(format!(
                "the journal is unusable until the next save succeeds: {why}"
            ))));
        }
        let mut buf = Vec::new();
        json_frame(&Record { t, input }, &mut buf)?;
        let before = self.journal.metadata().map_err(io(&path, "stat"))?.len();
        let written =
            self.journal
                .write_all(&buf)
                .and_then(|()| if sync { self.journal.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            if let Err(cut) = self.journal.set_len(before) {
                self.broken = Some(format!("a failed append could not be cut off: {cut}"));
            }
            return Err(io(&path, "append")(e));
        }
        Ok(())
    }

    /// New ATXs to the log, then the snapshot, then a fresh journal.
    fn save(&mut self, state: &mut State) -> Result<(), DevnetError> {
        let atx_path = self.dir.join(ATXS);
        let unsaved = state.unsaved_atxs.take().unwrap_or_default();
        let mut buf = Vec::new();
        for id in &unsaved {
            let (Some(a), Some(v)) = (state.store.get_signed(id), state.store.get(id)) else {
                state.unsaved_atxs = Some(unsaved);
                return Err(DevnetError::Encode("an accepted ATX is not in the store".into()));
            };
            if let Err(e) = json_frame(&AtxRecord::new(a, v), &mut buf) {
                state.unsaved_atxs = Some(unsaved);
                return Err(e);
            }
        }
        if !buf.is_empty() {
            let r = self.atxs.write_all(&buf).and_then(|()| self.atxs.sync_data());
            if let Err(e) = r {
                state.unsaved_atxs = Some(unsaved);
                return Err(io(&atx_path, "append")(e));
            }
        }
        state.unsaved_atxs = Some(Vec::new());
        self.atx_count += unsaved.len() as u64;
        self.generation += 1;
        let mut snap = MAGIC_SNAPSHOT.to_vec();
        json_frame(
            &SnapshotFile {
                fingerprint: H(self.fingerprint),
                config: self.config.clone(),
                generation: self.generation,
                atx_count: self.atx_count,
                state: state.snapshot(),
            },
            &mut snap,
        )?;
        // The next journal is made (and synced) before the snapshot replaces the old one: once
        // the snapshot is in place, only a rename is left. Crashing before that rename leaves the
        // old generation's journal, which every record of is in the new snapshot: stale, replaced
        // on open. Failing at it leaves no journal to append to until a save succeeds.
        let next = format!("{JOURNAL}.next");
        let next_path = self.dir.join(&next);
        {
            let mut f = File::create(&next_path).map_err(io(&next_path, "create"))?;
            f.write_all(&self.header(MAGIC_JOURNAL)?)
                .and_then(|()| f.sync_all())
                .map_err(io(&next_path, "write"))?;
        }
        write_atomic(&self.dir, SNAPSHOT, &snap)?;
        let journal_path = self.dir.join(JOURNAL);
        let swapped = std::fs::rename(&next_path, &journal_path)
            .map_err(io(&journal_path, "rename into place"))
            .and_then(|()| sync_dir(&self.dir))
            .and_then(|()| open_append(&journal_path));
        match swapped {
            Ok(f) => {
                self.journal = f;
                self.broken = None;
                Ok(())
            }
            Err(e) => {
                self.broken = Some(format!("the snapshot was saved but not the new journal: {e}"));
                Err(e)
            }
        }
    }
}

impl State {
    /// Journals an input that changed the state (no-op in memory only). Inputs other than
    /// `Advance` are fsynced.
    pub(super) fn journal(&mut self, t: u64, input: Input) -> Result<(), DevnetError> {
        match &mut self.persist {
            Some(p) => {
                let sync = !matches!(input, Input::Advance);
                p.append(t, input, sync)
            }
            None => Ok(()),
        }
    }

    /// Applies one journal record again.
    fn replay(&mut self, rec: Record, pow: &dyn PowVerifier) -> Result<(), String> {
        self.advance_to(rec.t).map_err(|e| e.to_string())?;
        match rec.input {
            Input::Advance => {}
            Input::PoetRegister {
                poet,
                node_id,
                challenge,
                signature,
                deadline,
            } => {
                let reg = Registration {
                    node_id: node_id.0,
                    challenge: challenge.0,
                    signature: signature.0,
                    deadline: deadline.map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
                };
                self.poet_register(&PoetId(poet), &reg)
                    .map_err(|e| e.to_string())?;
            }
            Input::SubmitAtx { atx } => {
                let atx = ActivationTxV1::from_bytes(&atx.0).map_err(|e| format!("ATX bytes: {e}"))?;
                self.submit_atx(&atx, pow).map_err(|e| e.to_string())?;
            }
            Input::SubmitTx { raw } => {
                self.submit_tx(&raw.0).map_err(|e| e.to_string())?;
            }
            Input::SubmitBallot { ballot } => {
                let ballot = Ballot::decode(&ballot.0).map_err(|e| format!("ballot bytes: {e}"))?;
                self.submit_ballot(&ballot).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

impl Devnet {
    /// The devnet stored in `dir` (created, with its genesis, if `dir` holds none), verifying
    /// k2pows with a fresh light-mode RandomX. Every input is journaled from then on; call
    /// [`Self::save`] now and then (every few seconds and on shutdown) to bound the journal.
    pub fn open(config: DevnetConfig, dir: &Path) -> Result<Self, DevnetError> {
        let rx = RandomXPow::with_options(RandomXOptions {
            mode: RandomXMode::Light,
            threads: 1,
            large_pages: false,
        })?;
        Self::open_with_pow_verifier(config, Arc::new(rx), dir)
    }

    /// [`Self::open`] with a given k2pow verifier.
    pub fn open_with_pow_verifier(
        config: DevnetConfig,
        pow: Arc<dyn PowVerifier>,
        dir: &Path,
    ) -> Result<Self, DevnetError> {
        std::fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
        let fingerprint = fingerprint(&config);
        let described = describe(&config);
        let mut state = State::new(config)?;
        state.unsaved_atxs = Some(Vec::new());
        let snap_path = dir.join(SNAPSHOT);
        let atx_path = dir.join(ATXS);
        let journal_path = dir.join(JOURNAL);
        if !snap_path.exists() {
            // A first open that did not finish its first save leaves at most headers behind
            // (nothing was acknowledged before it); anything more without a snapshot is damage.
            for (p, magic) in [(&atx_path, MAGIC_ATXS), (&journal_path, MAGIC_JOURNAL)] {
                if p.exists() {
                    let bytes = read(p)?;
                    let (recs, _) = records(p, &bytes, magic)?;
                    if recs.len() > 1 {
                        return Err(corrupt(p, format!("holds records but {SNAPSHOT} is missing")));
                    }
                }
            }
            let mut atx_head = MAGIC_ATXS.to_vec();
            json_frame(
                &Header {
                    fingerprint: H(fingerprint),
                    generation: 0,
                },
                &mut atx_head,
            )?;
            write_atomic(dir, ATXS, &atx_head)?;
            let mut p = Persist {
                dir: dir.to_path_buf(),
                fingerprint,
                config: described,
                generation: 0,
                journal: open_append(&atx_path)?,
                atxs: open_append(&atx_path)?,
                atx_count: 0,
                broken: None,
            };
            p.save(&mut state)?;
            state.persist = Some(p);
            return Ok(Devnet {
                state: Mutex::new(state),
                pow,
            });
        }

        // The snapshot: whole or corrupt (it is only ever renamed into place).
        let bytes = read(&snap_path)?;
        if bytes.starts_with(MAGIC_SNAPSHOT_V1) {
            return Err(corrupt(
                &snap_path,
                "snapshot format 1 (written before signed ballots) is not supported: start the devnet in a fresh directory",
            ));
        }
        let (recs, end) = records(&snap_path, &bytes, MAGIC_SNAPSHOT)?;
        let [(payload, _)] = recs[..] else {
            return Err(corrupt(&snap_path, "not exactly one whole record"));
        };
        if end != bytes.len() {
            return Err(corrupt(&snap_path, "truncated"));
        }
        let file: SnapshotFile = parse(&snap_path, payload, "snapshot")?;
        if file.fingerprint.0 != fingerprint {
            return Err(DevnetError::ConfigMismatch {
                path: snap_path,
                stored: file.config,
                given: described,
            });
        }
        let mut p = Persist {
            dir: dir.to_path_buf(),
            fingerprint,
            config: described,
            generation: file.generation,
            journal: File::open(&snap_path).map_err(io(&snap_path, "open"))?,
            atxs: File::open(&snap_path).map_err(io(&snap_path, "open"))?,
            atx_count: file.atx_count,
            broken: None,
        };

        // The ATX log, cut to the snapshot's count.
        let bytes = read(&atx_path)?;
        let (recs, _) = records(&atx_path, &bytes, MAGIC_ATXS)?;
        p.check_header(&atx_path, recs.first())?;
        let count = usize::try_from(file.atx_count).unwrap_or(usize::MAX);
        let Some(kept) = recs.get(1..count.saturating_add(1)) else {
            return Err(corrupt(
                &atx_path,
                format!(
                    "{} ATXs, the snapshot counts {}",
                    recs.len().saturating_sub(1),
                    count
                ),
            ));
        };
        let mut atxs = Vec::with_capacity(kept.len());
        for (i, (r, _)) in kept.iter().enumerate() {
            let rec: AtxRecord = parse(&atx_path, r, "ATX record")?;
            atxs.push(
                rec.decode()
                    .map_err(|e| corrupt(&atx_path, format!("record {i}: {e}")))?,
            );
        }
        let atx_end = recs.get(count).map_or(8, |(_, end)| *end);
        p.atxs = truncate_and_append(&atx_path, atx_end)?;
        state
            .restore(file.state, atxs)
            .map_err(|e| corrupt(&snap_path, e))?;
        let now = state.now_ms;
        state.advance_to(now)?;

        // The journal: replayed if it follows this snapshot, else stale and replaced.
        let mut fresh_journal = true;
        if journal_path.exists() {
            let bytes = read(&journal_path)?;
            let (recs, end) = records(&journal_path, &bytes, MAGIC_JOURNAL)?;
            let generation = p.check_header(&journal_path, recs.first())?;
            if generation > p.generation {
                return Err(corrupt(
                    &journal_path,
                    format!(
                        "generation {generation} is ahead of the snapshot's {}",
                        p.generation
                    ),
                ));
            }
            if generation == p.generation {
                for (i, (r, _)) in recs.iter().skip(1).enumerate() {
                    let rec: Record = parse(&journal_path, r, "journal record")?;
                    state
                        .replay(rec, &*pow)
                        .map_err(|e| corrupt(&journal_path, format!("replaying record {i}: {e}")))?;
                }
                p.journal = truncate_and_append(&journal_path, end)?;
                fresh_journal = false;
            }
        }
        if fresh_journal {
            write_atomic(dir, JOURNAL, &p.header(MAGIC_JOURNAL)?)?;
            p.journal = open_append(&journal_path)?;
        }
        state.persist = Some(p);
        Ok(Devnet {
            state: Mutex::new(state),
            pow,
        })
    }

    /// Writes a snapshot (and the ATXs accepted since the last one) and starts a new journal.
    /// Does nothing for a devnet made with [`Self::new`] (memory only).
    pub fn save(&self) -> Result<(), DevnetError> {
        let mut s = self.lock();
        let Some(mut p) = s.persist.take() else {
            return Ok(());
        };
        let r = p.save(&mut s);
        s.persist = Some(p);
        r
    }
}
