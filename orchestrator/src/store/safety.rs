//! The safety database (conventions item 10, node spec §2.7), in the manner of Lighthouse's
//! slashing protection: before an ATX is signed, one exclusive transaction answers Safe (and
//! records the ATX) or NotSafe (and records nothing).
//!
//! The rules: at most one ATX per identity per publish epoch, and never two different ATXs naming
//! the same previous ATX (an initial ATX names the empty id, so an identity has at most one
//! initial ATX). The table's primary key `(node_id, publish_epoch)` and unique `(node_id,
//! prev_atx)` enforce both even against a second process on the same database; the table is
//! append-only (triggers refuse UPDATE and DELETE).
//!
//! Ballots (devnet mode, where the coordinator signs them): at most one ballot message per
//! identity per layer (`ballot_safety`, primary key `(node_id, layer)`, append-only), the same
//! message again being harmless.

use sqlx::any::AnyRow;
use sqlx::{Any, Connection, Transaction};

use super::error::StoreError;
use super::sql::{self, col};
use super::types::{AtxRecord, NotSafeReason, Safety};
use super::{decode_all, Backend, Store};
use crate::keystore::{BallotPermit, NodeId, SigningPermit};

/// The safety database's answer in the form the keystore takes.
#[derive(Debug, PartialEq, Eq)]
pub enum AtxSigning {
    /// Recorded: the permit lets `Keystore::sign_atx` sign exactly the message it was asked for.
    Permitted(SigningPermit),
    /// Signing would be slashable; nothing was recorded and no permit exists.
    Refused {
        existing_hash: [u8; 32],
        reason: NotSafeReason,
    },
}

/// The safety database's answer for a ballot.
#[derive(Debug, PartialEq, Eq)]
pub enum BallotSigning {
    /// Recorded: the permit lets `Keystore::sign_ballot` sign exactly the message it was asked for.
    Permitted(BallotPermit),
    /// Another ballot is recorded for the layer; nothing was recorded and no permit exists.
    Refused {
        existing_hash: [u8; 32],
        reason: NotSafeReason,
    },
}

const EMPTY_ATX: [u8; 32] = [0; 32];

fn prev_from_hex(row: &AnyRow) -> Result<Option<[u8; 32]>, StoreError> {
    let p = sql::hex32(row, "prev_atx")?;
    Ok(if p == EMPTY_ATX { None } else { Some(p) })
}

fn epoch_col(row: &AnyRow) -> Result<u32, StoreError> {
    sql::u32_col(row, "publish_epoch")
}

impl Store {
    /// Answers whether identity `node_id` may sign the ATX `message_hash` for `publish_epoch`
    /// with previous ATX `prev_atx` (`None` for an initial ATX), and records it when it may.
    ///
    /// * nothing recorded for the epoch and the previous ATX unused: `Safe`, now recorded;
    /// * the very same ATX already recorded: `Safe` (re-signing the same message is harmless);
    /// * another ATX recorded for the epoch, or another ATX naming the same previous ATX:
    ///   `NotSafe`, nothing recorded.
    ///
    /// Durable before it answers: on SQLite the transaction commits with `synchronous = FULL`.
    /// Transient conflicts (deadlock, serialization failure, busy) are retried here a few times.
    pub async fn check_and_record_atx(
        &self,
        node_id: &[u8; 32],
        publish_epoch: u32,
        message_hash: &[u8; 32],
        prev_atx: Option<&[u8; 32]>,
        now: i64,
    ) -> Result<Safety, StoreError> {
        let record = Record::Atx {
            publish_epoch,
            prev_atx,
        };
        self.check_and_record(node_id, record, message_hash, now).await
    }

    /// Answers whether identity `node_id` may sign the ballot message `message_hash` for `layer`,
    /// and records it when it may: Safe when nothing is recorded for the layer (now recorded) or
    /// this very message is; `NotSafe` (`DoubleBallot`, nothing recorded) when another ballot of
    /// the identity is recorded for the layer. Durable before it answers, as for ATXs.
    pub async fn check_and_record_ballot(
        &self,
        node_id: &[u8; 32],
        layer: u32,
        message_hash: &[u8; 32],
        now: i64,
    ) -> Result<Safety, StoreError> {
        self.check_and_record(node_id, Record::Ballot { layer }, message_hash, now)
            .await
    }

    /// [`Store::check_and_record_ballot`] for `blake3(message)`, and on Safe the keystore's
    /// [`BallotPermit`] for `message`, the ballot's signed bytes (`{Layer, MsgHash}`).
    pub async fn grant_ballot_signature(
        &self,
        node_id: NodeId,
        layer: u32,
        message: &[u8],
        now: i64,
    ) -> Result<BallotSigning, StoreError> {
        // The message must be the ballot metadata of this very layer (`{Layer, MsgHash}`), so that
        // a record for one layer cannot permit a ballot for another.
        use node_bridge::atx::Scale;
        let of_layer =
            node_bridge::ballot::BallotMetadata::from_bytes(message).is_ok_and(|m| m.layer == layer);
        if !of_layer {
            return Err(StoreError::invalid(
                "ballot message",
                "is not the ballot metadata of the layer it is recorded for",
            ));
        }
        let hash = *blake3::hash(message).as_bytes();
        match self
            .check_and_record_ballot(node_id.as_bytes(), layer, &hash, now)
            .await?
        {
            Safety::Safe => Ok(BallotSigning::Permitted(BallotPermit::granted(
                node_id, layer, hash,
            ))),
            Safety::NotSafe {
                existing_hash,
                reason,
            } => Ok(BallotSigning::Refused {
                existing_hash,
                reason,
            }),
        }
    }

    async fn check_and_record(
        &self,
        node_id: &[u8; 32],
        record: Record<'_>,
        message_hash: &[u8; 32],
        now: i64,
    ) -> Result<Safety, StoreError> {
        let mut attempt = 0;
        loop {
            let r = self
                .check_and_record_once(node_id, record, message_hash, now)
                .await;
            match r {
                Err(e) if e.is_retryable() && attempt < 4 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "safety db: retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn check_and_record_once(
        &self,
        node_id: &[u8; 32],
        record: Record<'_>,
        message_hash: &[u8; 32],
        now: i64,
    ) -> Result<Safety, StoreError> {
        let op = "safety check";
        match self.backend() {
            Backend::Postgres => {
                let mut tx = self.pool().begin().await.map_err(StoreError::map(op))?;
                let answer = decide(&mut tx, node_id, record, message_hash, now).await?;
                tx.commit().await.map_err(StoreError::map(op))?;
                Ok(answer)
            }
            Backend::Sqlite => {
                let mut conn = self.writer().acquire().await.map_err(StoreError::map(op))?;
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::map(op))?;
                let result = async {
                    let mut tx = conn
                        .begin_with("BEGIN IMMEDIATE")
                        .await
                        .map_err(StoreError::map(op))?;
                    let answer = decide(&mut tx, node_id, record, message_hash, now).await?;
                    tx.commit().await.map_err(StoreError::map(op))?;
                    Ok(answer)
                }
                .await;
                // Back to the pool's setting; if this fails the connection only stays slower.
                let _ = sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await;
                result
            }
        }
    }

    /// [`Store::check_and_record_atx`] for the ATX `atx_id`, and on Safe the keystore's
    /// [`SigningPermit`] for `message`, the exact ATX-domain payload to be signed (v1:
    /// `keystore::atx_v1_message(publish_epoch, atx_id)`; v2: the ATX id itself). A `message`
    /// that does not end with `atx_id` is refused as `Invalid`, so that a permit recorded for one
    /// ATX cannot sign another.
    pub async fn grant_atx_signature(
        &self,
        node_id: NodeId,
        publish_epoch: u32,
        atx_id: &[u8; 32],
        prev_atx: Option<&[u8; 32]>,
        message: &[u8],
        now: i64,
    ) -> Result<AtxSigning, StoreError> {
        if !message.ends_with(atx_id) {
            return Err(StoreError::invalid(
                "ATX message",
                "does not end with the ATX id it is recorded for",
            ));
        }
        match self
            .check_and_record_atx(node_id.as_bytes(), publish_epoch, atx_id, prev_atx, now)
            .await?
        {
            Safety::Safe => Ok(AtxSigning::Permitted(SigningPermit::granted(
                node_id,
                publish_epoch,
                *blake3::hash(message).as_bytes(),
            ))),
            Safety::NotSafe {
                existing_hash,
                reason,
            } => Ok(AtxSigning::Refused {
                existing_hash,
                reason,
            }),
        }
    }

    /// Every ATX recorded for an identity, by epoch.
    pub async fn list_atx_records(&self, node_id: &[u8; 32]) -> Result<Vec<AtxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, publish_epoch, message_hash, prev_atx, recorded_at FROM atx_safety \
             WHERE node_id = $1 ORDER BY publish_epoch",
        )
        .bind(hex::encode(node_id))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list ATX records"))?;
        decode_all(rows, |r| {
            Ok(AtxRecord {
                node_id: sql::hex32(r, "node_id")?,
                publish_epoch: epoch_col(r)?,
                message_hash: sql::hex32(r, "message_hash")?,
                prev_atx: prev_from_hex(r)?,
                recorded_at: col(r, "recorded_at")?,
            })
        })
    }
}

/// What is about to be signed.
#[derive(Debug, Clone, Copy)]
enum Record<'a> {
    Atx {
        publish_epoch: u32,
        prev_atx: Option<&'a [u8; 32]>,
    },
    Ballot {
        layer: u32,
    },
}

async fn decide(
    tx: &mut Transaction<'_, Any>,
    node_id: &[u8; 32],
    record: Record<'_>,
    message_hash: &[u8; 32],
    now: i64,
) -> Result<Safety, StoreError> {
    match record {
        Record::Atx {
            publish_epoch,
            prev_atx,
        } => decide_atx(tx, node_id, publish_epoch, message_hash, prev_atx, now).await,
        Record::Ballot { layer } => decide_ballot(tx, node_id, layer, message_hash, now).await,
    }
}

async fn decide_ballot(
    tx: &mut Transaction<'_, Any>,
    node_id: &[u8; 32],
    layer: u32,
    message_hash: &[u8; 32],
    now: i64,
) -> Result<Safety, StoreError> {
    let op = "ballot safety check";
    let node = hex::encode(node_id);
    let inserted = sqlx::query(
        "INSERT INTO ballot_safety (node_id, layer, message_hash, recorded_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(node.as_str())
    .bind(i64::from(layer))
    .bind(hex::encode(message_hash))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::map(op))?
    .rows_affected();
    if inserted == 1 {
        return Ok(Safety::Safe);
    }
    let row = sqlx::query("SELECT message_hash FROM ballot_safety WHERE node_id = $1 AND layer = $2")
        .bind(node.as_str())
        .bind(i64::from(layer))
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::map(op))?;
    let Some(row) = row else {
        // As for ATXs: records are never deleted, so this is a transient race; retried.
        return Err(StoreError::Unavailable {
            op,
            source: sqlx::Error::Protocol("ballot safety insert conflicted but no record is visible".into()),
        });
    };
    let existing = sql::hex32(&row, "message_hash")?;
    if existing == *message_hash {
        return Ok(Safety::Safe);
    }
    tracing::warn!(node_id = %node, layer, "safety db: refused to record a second ballot for the layer");
    Ok(Safety::NotSafe {
        existing_hash: existing,
        reason: NotSafeReason::DoubleBallot { layer },
    })
}

async fn decide_atx(
    tx: &mut Transaction<'_, Any>,
    node_id: &[u8; 32],
    publish_epoch: u32,
    message_hash: &[u8; 32],
    prev_atx: Option<&[u8; 32]>,
    now: i64,
) -> Result<Safety, StoreError> {
    let op = "safety check";
    let node = hex::encode(node_id);
    let hash = hex::encode(message_hash);
    let prev = hex::encode(prev_atx.unwrap_or(&EMPTY_ATX));
    // The unique constraints decide: the insert succeeds only if neither the epoch nor the
    // previous ATX is taken. On PostgreSQL a concurrent insert of a conflicting key makes this
    // one wait for that transaction's outcome.
    let inserted = sqlx::query(
        "INSERT INTO atx_safety (node_id, publish_epoch, message_hash, prev_atx, recorded_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(node.as_str())
    .bind(i64::from(publish_epoch))
    .bind(hash.as_str())
    .bind(prev.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::map(op))?
    .rows_affected();
    if inserted == 1 {
        return Ok(Safety::Safe);
    }

    let rows = sqlx::query(
        "SELECT publish_epoch, message_hash, prev_atx FROM atx_safety \
         WHERE node_id = $1 AND (publish_epoch = $2 OR prev_atx = $3)",
    )
    .bind(node.as_str())
    .bind(i64::from(publish_epoch))
    .bind(prev.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::map(op))?;
    let mut same_epoch = None;
    let mut same_prev = None;
    for r in &rows {
        let rec = (epoch_col(r)?, sql::hex32(r, "message_hash")?, prev_from_hex(r)?);
        if rec.0 == publish_epoch {
            same_epoch = Some(rec);
        } else {
            same_prev = Some(rec);
        }
    }
    let prev_atx = prev_atx.copied().filter(|p| *p != EMPTY_ATX);
    let answer = match (same_epoch, same_prev) {
        (Some((_, existing, recorded_prev)), _) if existing == *message_hash => {
            if recorded_prev == prev_atx {
                return Ok(Safety::Safe);
            }
            Safety::NotSafe {
                existing_hash: existing,
                reason: NotSafeReason::PrevAtxMismatch {
                    recorded_prev_atx: recorded_prev,
                },
            }
        }
        (Some((_, existing, _)), _) => Safety::NotSafe {
            existing_hash: existing,
            reason: NotSafeReason::DoublePublish { publish_epoch },
        },
        (None, Some((epoch, existing, _))) => Safety::NotSafe {
            existing_hash: existing,
            reason: NotSafeReason::PrevAtxReused {
                prev_atx,
                existing_epoch: epoch,
            },
        },
        (None, None) => {
            // The insert conflicted, yet no conflicting row is visible: records are never deleted,
            // so this is a transient race of the database; the caller's retry loop tries again.
            return Err(StoreError::Unavailable {
                op,
                source: sqlx::Error::Protocol("safety insert conflicted but no record is visible".into()),
            });
        }
    };
    if let Safety::NotSafe { reason, .. } = &answer {
        tracing::warn!(node_id = %node, publish_epoch, %reason, "safety db: refused to record a conflicting ATX");
    }
    Ok(answer)
}
