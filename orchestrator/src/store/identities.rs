//! Identities: one row per smeshing identity (node id), its PoST parameters and life state.

use post::data::Layout;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::{ConflictKind, StoreError};
use super::sql::{self, col, to_i64};
use super::types::{Identity, IdentityState, IdentityUpdate, NewIdentity};
use super::{decode_all, Store};

pub(super) const COLS: &str = "id, name, node_id, num_units, labels_per_unit, max_file_size, scrypt_n, \
                    commitment_atx_id, coinbase, state, vrf_nonce, poet_phase_ms, created_at, updated_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<Identity, StoreError> {
    Ok(Identity {
        id: sql::uuid(row, "id")?,
        name: col(row, "name")?,
        node_id: sql::hex32(row, "node_id")?,
        num_units: sql::u32_col(row, "num_units")?,
        labels_per_unit: sql::u64_col(row, "labels_per_unit")?,
        max_file_size: sql::u64_col(row, "max_file_size")?,
        scrypt_n: sql::u32_col(row, "scrypt_n")?,
        commitment_atx_id: sql::opt_hex32(row, "commitment_atx_id")?,
        coinbase: col(row, "coinbase")?,
        state: sql::text_enum(row, "state")?,
        vrf_nonce: sql::opt_u64(row, "vrf_nonce")?,
        poet_phase_ms: sql::opt_u64(row, "poet_phase_ms")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.trim() != name || name.len() > 200 {
        return Err(StoreError::invalid(
            "identity name",
            format!("{name:?}: must be 1 to 200 characters without surrounding spaces"),
        ));
    }
    Ok(())
}

fn check_layout(num_units: u32, labels_per_unit: u64, max_file_size: u64) -> Result<Layout, StoreError> {
    if num_units == 0 || labels_per_unit == 0 {
        return Err(StoreError::invalid(
            "identity size",
            "num_units and labels_per_unit must be positive",
        ));
    }
    let layout = Layout::new(num_units, labels_per_unit, max_file_size)
        .map_err(|e| StoreError::invalid("identity size", e.to_string()))?;
    to_i64("labels_per_unit", labels_per_unit)?;
    to_i64("max_file_size", max_file_size)?;
    Ok(layout)
}

impl Store {
    /// Adds an identity in state `created`. A taken name or node id is a `Duplicate` conflict.
    pub async fn create_identity(&self, new: &NewIdentity, now: i64) -> Result<Identity, StoreError> {
        check_name(&new.name)?;
        check_layout(new.num_units, new.labels_per_unit, new.max_file_size)?;
        if new.scrypt_n == 0 {
            return Err(StoreError::invalid("scrypt_n", "must be positive"));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO identities ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11, $11) \
             RETURNING {COLS}"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(new.name.as_str())
        .bind(hex::encode(new.node_id))
        .bind(i64::from(new.num_units))
        .bind(to_i64("labels_per_unit", new.labels_per_unit)?)
        .bind(to_i64("max_file_size", new.max_file_size)?)
        .bind(i64::from(new.scrypt_n))
        .bind(new.commitment_atx_id.map(hex::encode))
        .bind(new.coinbase.as_deref())
        .bind(IdentityState::Created.as_str())
        .bind(now)
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::map("create identity"))?;
        from_row(&row)
    }

    pub async fn get_identity(&self, id: Uuid) -> Result<Identity, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM identities WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map("get identity"))?;
        match row {
            Some(r) => from_row(&r),
            None => Err(StoreError::not_found("identity", id)),
        }
    }

    pub async fn find_identity_by_node_id(&self, node_id: &[u8; 32]) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM identities WHERE node_id = $1"))
            .bind(hex::encode(node_id))
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map("find identity by node id"))?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn find_identity_by_name(&self, name: &str) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM identities WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map("find identity by name"))?;
        row.as_ref().map(from_row).transpose()
    }

    /// All identities, by name.
    pub async fn list_identities(&self) -> Result<Vec<Identity>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM identities ORDER BY name, id"))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::map("list identities"))?;
        decode_all(rows, from_row)
    }

    /// Sets the state. With `expected`, only if the state is still `expected` (compare-and-set):
    /// otherwise a `StateChanged` conflict and nothing changes.
    pub async fn update_identity_state(
        &self,
        id: Uuid,
        state: IdentityState,
        expected: Option<IdentityState>,
        now: i64,
    ) -> Result<Identity, StoreError> {
        let op = "update identity state";
        let row = match expected {
            Some(exp) => sqlx::query(&format!(
                "UPDATE identities SET state = $2, updated_at = $3 WHERE id = $1 AND state = $4 \
                 RETURNING {COLS}"
            ))
            .bind(id.to_string())
            .bind(state.as_str())
            .bind(now)
            .bind(exp.as_str())
            .fetch_optional(self.writer())
            .await
            .map_err(StoreError::map(op))?,
            None => sqlx::query(&format!(
                "UPDATE identities SET state = $2, updated_at = $3 WHERE id = $1 RETURNING {COLS}"
            ))
            .bind(id.to_string())
            .bind(state.as_str())
            .bind(now)
            .fetch_optional(self.writer())
            .await
            .map_err(StoreError::map(op))?,
        };
        match row {
            Some(r) => from_row(&r),
            None => {
                let current = self.get_identity(id).await?;
                Err(StoreError::conflict(
                    op,
                    ConflictKind::StateChanged,
                    format!(
                        "identity {id} is {} (expected {})",
                        current.state,
                        expected.map(IdentityState::as_str).unwrap_or("any")
                    ),
                ))
            }
        }
    }

    /// Changes the fields that are `Some` in `update`.
    pub async fn update_identity(
        &self,
        id: Uuid,
        update: &IdentityUpdate,
        now: i64,
    ) -> Result<Identity, StoreError> {
        let op = "update identity";
        if let Some(name) = &update.name {
            check_name(name)?;
        }
        let mut tx = self.begin_write(op).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM identities WHERE id = $1{}",
            self.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let current = match row {
            Some(r) => from_row(&r)?,
            None => return Err(StoreError::not_found("identity", id)),
        };
        if let Some(units) = update.num_units {
            check_layout(units, current.labels_per_unit, current.max_file_size)?;
        }
        let vrf_nonce = update.vrf_nonce.map(|n| to_i64("vrf_nonce", n)).transpose()?;
        let row = sqlx::query(&format!(
            "UPDATE identities SET name = COALESCE($2, name), num_units = COALESCE($3, num_units), \
             commitment_atx_id = COALESCE($4, commitment_atx_id), coinbase = COALESCE($5, coinbase), \
             vrf_nonce = COALESCE($6, vrf_nonce), updated_at = $7 WHERE id = $1 RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(update.name.as_deref())
        .bind(update.num_units.map(i64::from))
        .bind(update.commitment_atx_id.map(hex::encode))
        .bind(update.coinbase.as_deref())
        .bind(vrf_nonce)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let identity = from_row(&row)?;
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(identity)
    }

    /// Offers a VRF candidate found by an init job (already checked: `label32` is the label at
    /// `index`, below the VRF threshold). Kept when it beats the stored one: the smaller label,
    /// the lower index on a tie; a nonce imported without its label is never replaced. One
    /// conditional update, so concurrent offers of several jobs keep the best. Returns whether it
    /// was kept.
    pub async fn offer_vrf_candidate(
        &self,
        id: Uuid,
        index: u64,
        label32: &[u8; 32],
        now: i64,
    ) -> Result<bool, StoreError> {
        let op = "offer VRF candidate";
        let label = hex::encode(label32);
        let index = to_i64("vrf_nonce", index)?;
        let done = sqlx::query(
            "UPDATE identities SET vrf_nonce = $2, vrf_label = $3, updated_at = $4 WHERE id = $1 AND \
             ((vrf_nonce IS NULL AND vrf_label IS NULL) OR vrf_label > $3 \
              OR (vrf_label = $3 AND vrf_nonce > $2))",
        )
        .bind(id.to_string())
        .bind(index)
        .bind(&label)
        .bind(now)
        .execute(self.writer())
        .await
        .map_err(StoreError::map(op))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Not kept: say why an unknown identity was not.
        self.get_identity(id).await?;
        Ok(false)
    }

    /// Records the PoET phase (phase shift, ms) the identity smeshes in.
    pub async fn set_poet_phase(&self, id: Uuid, phase_ms: u64, now: i64) -> Result<(), StoreError> {
        let phase = to_i64("poet_phase_ms", phase_ms)?;
        let done = sqlx::query("UPDATE identities SET poet_phase_ms = $2, updated_at = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(phase)
            .bind(now)
            .execute(self.writer())
            .await
            .map_err(StoreError::map("set PoET phase"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("identity", id));
        }
        Ok(())
    }

    /// Deletes an identity with its file placements, init progress and finished jobs. Refused
    /// (`InvalidTransition`) while it has queued or leased jobs. Its safety records stay.
    pub async fn delete_identity(&self, id: Uuid) -> Result<(), StoreError> {
        let op = "delete identity";
        let mut tx = self.begin_write(op).await?;
        let exists = sqlx::query(&format!(
            "SELECT id FROM identities WHERE id = $1{}",
            self.for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        if exists.is_none() {
            return Err(StoreError::not_found("identity", id));
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE identity_id = $1 AND state IN ('queued', 'leased')",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        if active > 0 {
            return Err(StoreError::conflict(
                op,
                ConflictKind::InvalidTransition,
                format!("identity {id} has {active} queued or leased jobs; cancel them first"),
            ));
        }
        sqlx::query("DELETE FROM jobs WHERE identity_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
        sqlx::query("DELETE FROM identities WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
        tx.commit().await.map_err(StoreError::map(op))
    }
}
