//! Labels computed on one rig, stored on another. A compute-only worker (rented GPUs, a rig with
//! no disk of its own) that leases an init job for another worker's disk gets a stream grant with
//! the lease: the storage worker's URL and a token valid for that lease only. It sends every
//! batch of labels it computes to the storage worker ([`client`]) with the batch's BLAKE3 and the
//! batch's best VRF-nonce candidate; the storage worker ([`server`]) asks the coordinator what the
//! token allows (and caches the answer briefly), checks that the batch lies inside the granted
//! range, checks the checksum and one label recomputed on its CPU, writes the batch where postcli
//! would, fsyncs, merges the candidate into its metadata only after recomputing it, and acks.
//! Only after the ack does the compute worker report the range done to the coordinator.
//!
//! The wire format of one batch, `POST {url}/stream/v1/chunk`:
//! * `Authorization: Bearer <token>` (the grant's token),
//! * [`HEADER_START`]: the batch's first label (identity-wide index),
//! * [`HEADER_BLAKE3`]: 64 hex digits, BLAKE3 of the body,
//! * [`HEADER_VRF`] (optional): `<index>:<64 hex digits of its label32>`,
//! * the body: the labels, 16 bytes each, at most [`MAX_CHUNK_BYTES`].
//!
//! The answer is 200 with a [`ChunkAck`], or an error in the coordinator's error contract
//! (`{"error": {"code", "message"}}`): 400 `checksum_mismatch` (sent again), 401 no token,
//! 403 `stream_token_invalid`, 409 `stale_lease`, 422 `outside_grant`, `bad_labels` or
//! `bad_candidate`, 503 `coordinator_unreachable`, 500 `io`, 507 `disk_full` (with the disk's
//! `free_bytes` in the error object when measured). The sender retries 5xx, 429 and checksum
//! mismatches with backoff; `disk_full` is final: the job fails naming the target disk and the
//! coordinator moves the file to another disk.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// The chunk route on the storage worker.
pub const CHUNK_PATH: &str = "/stream/v1/chunk";
/// The batch's first label.
pub const HEADER_START: &str = "x-smeshfleet-start";
/// BLAKE3 of the body, 64 hex digits.
pub const HEADER_BLAKE3: &str = "x-smeshfleet-blake3";
/// The batch's best VRF-nonce candidate: `<index>:<label32 hex>`.
pub const HEADER_VRF: &str = "x-smeshfleet-vrf";
/// The largest batch one request may carry (4 Mi labels).
pub const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The storage worker's answer to a batch it made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub start_label: u64,
    pub end_label: u64,
}

/// `<index>:<label32 hex>`.
pub fn encode_candidate(c: &post::backend::VrfCandidate) -> String {
    format!("{}:{}", c.index, hex::encode(c.label32))
}

/// The inverse of [`encode_candidate`]; `None` when malformed.
pub fn decode_candidate(s: &str) -> Option<post::backend::VrfCandidate> {
    let (i, l) = s.split_once(':')?;
    let index = i.parse().ok()?;
    let mut label32 = [0u8; 32];
    hex::decode_to_slice(l, &mut label32).ok()?;
    Some(post::backend::VrfCandidate { index, label32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_round_trip_and_garbage_is_refused() {
        let c = post::backend::VrfCandidate {
            index: 12345,
            label32: [7; 32],
        };
        assert_eq!(decode_candidate(&encode_candidate(&c)), Some(c));
        assert_eq!(decode_candidate("12"), None);
        assert_eq!(decode_candidate("x:00"), None);
        assert_eq!(decode_candidate(&format!("1:{}", "zz".repeat(32))), None);
    }
}
