//! `/api/v1/identities`: create, import, list, get, export, delete.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::state::{now_ms, AppState};
use crate::keystore::{KeystoreError, NodeId};
use crate::store::{Identity, IdentityFile, JobFilter, NewIdentity};

/// Mainnet defaults (node.md §2.1): 2^32 labels per unit, 4 GiB files, scrypt N = 8192.
pub const DEFAULT_LABELS_PER_UNIT: u64 = 1 << 32;
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 32;
pub const DEFAULT_SCRYPT_N: u32 = 8192;
/// Most units one identity may have (a bound, far above any real smesher's identity).
pub const MAX_UNITS: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    pub id: Uuid,
    pub name: String,
    /// The identity's public key, 64 hex digits.
    pub node_id: String,
    pub num_units: u32,
    pub labels_per_unit: u64,
    pub max_file_size: u64,
    pub scrypt_n: u32,
    pub commitment_atx_id: Option<String>,
    pub coinbase: Option<String>,
    /// `created`, `initializing`, `ready`, `waiting_for_challenge`, `k2pow`, `proving`,
    /// `proof_verified`, `submitted` or `failed`.
    pub state: String,
    pub vrf_nonce: Option<u64>,
    /// The phase shift (ms) of the PoETs the identity registers with; null until the smeshing
    /// driver places it.
    pub poet_phase_ms: Option<u64>,
    /// num_units x labels_per_unit.
    pub labels_total: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// ATXs the node holds of this identity; 0 without a node.
    pub atxs_published: u64,
    /// Rewards the identity earned (paid to its coinbase) in the layers the node keeps, smidge;
    /// 0 without a node or a coinbase.
    pub rewards_total: u64,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> Self {
        IdentityView {
            id: i.id,
            name: i.name.clone(),
            node_id: hex::encode(i.node_id),
            num_units: i.num_units,
            labels_per_unit: i.labels_per_unit,
            max_file_size: i.max_file_size,
            scrypt_n: i.scrypt_n,
            commitment_atx_id: i.commitment_atx_id.map(hex::encode),
            coinbase: i.coinbase.clone(),
            state: i.state.as_str().to_owned(),
            vrf_nonce: i.vrf_nonce,
            poet_phase_ms: i.poet_phase_ms,
            labels_total: u64::from(i.num_units).saturating_mul(i.labels_per_unit),
            created_at: i.created_at,
            updated_at: i.updated_at,
            atxs_published: 0,
            rewards_total: 0,
        }
    }
}

/// Fills `atxs_published` and `rewards_total` from the node (zeros without one).
async fn with_node_stats(state: &AppState, views: &mut [IdentityView]) {
    let keys = views
        .iter()
        .map(|v| {
            let mut id = [0u8; 32];
            // The view's node id is the store's 32 bytes, hex-encoded: this cannot fail.
            let _ = hex::decode_to_slice(&v.node_id, &mut id);
            (id, v.coinbase.clone())
        })
        .collect();
    let stats = super::node::identities_node_stats(state, keys).await;
    for (v, (atxs, rewards)) in views.iter_mut().zip(stats) {
        v.atxs_published = atxs;
        v.rewards_total = rewards;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    pub file_index: u64,
    pub worker_id: Option<Uuid>,
    pub disk_id: Option<String>,
    pub path: Option<String>,
    pub state: String,
    pub labels_done: u64,
}

impl From<&IdentityFile> for FileView {
    fn from(f: &IdentityFile) -> Self {
        FileView {
            file_index: f.file_index,
            worker_id: f.worker_id,
            disk_id: f.disk_id.clone(),
            path: f.path.clone(),
            state: f.state.as_str().to_owned(),
            labels_done: f.labels_done,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityDetail {
    #[serde(flatten)]
    pub identity: IdentityView,
    /// Labels recorded written and durable.
    pub labels_done: u64,
    /// Where each data file lives.
    pub files: Vec<FileView>,
    /// Queued or leased jobs of this identity.
    pub live_jobs: u64,
}

/// `POST /api/v1/identities`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    /// 1 to 64 characters: letters, digits, `.`, `_`, `-`.
    pub name: String,
    pub num_units: u32,
    /// Default 2^32 (mainnet).
    #[serde(default)]
    pub labels_per_unit: Option<u64>,
    /// Bytes per `postdata_<k>.bin`, a multiple of 16; default 4 GiB.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// A power of two >= 2; default 8192 (mainnet).
    #[serde(default)]
    pub scrypt_n: Option<u32>,
    /// 64 hex digits, when already known.
    #[serde(default)]
    pub commitment_atx_id: Option<String>,
    #[serde(default)]
    pub coinbase: Option<String>,
}

/// `POST /api/v1/identities/import`: exactly one of `key`, `key_file`, `identities_dir`.
/// (No `Debug`: it may hold a key.)
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportIdentity {
    /// The name of the imported identity (with `identities_dir`: a prefix; each file's stem is
    /// appended).
    pub name: String,
    /// A go-spacemesh key: 128 hex digits (seed and public key).
    #[serde(default)]
    pub key: Option<String>,
    /// A go-spacemesh key file on the coordinator's machine.
    #[serde(default)]
    pub key_file: Option<String>,
    /// A go-spacemesh `identities/` directory: every `*.key` in it.
    #[serde(default)]
    pub identities_dir: Option<String>,
    /// An existing PoST data directory of this identity (postcli or go-spacemesh): its
    /// `postdata_metadata.json` supplies sizes, commitment ATX and VRF nonce, and must name the
    /// same node id.
    #[serde(default)]
    pub post_data_dir: Option<String>,
    /// Required unless `post_data_dir` is given.
    #[serde(default)]
    pub num_units: Option<u32>,
    #[serde(default)]
    pub labels_per_unit: Option<u64>,
    #[serde(default)]
    pub max_file_size: Option<u64>,
    #[serde(default)]
    pub scrypt_n: Option<u32>,
    #[serde(default)]
    pub commitment_atx_id: Option<String>,
    #[serde(default)]
    pub coinbase: Option<String>,
}

/// (No `Debug`: it holds the passphrase.)
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The keystore's passphrase, checked again for every export.
    pub passphrase: String,
}

/// (No `Debug`: it holds the key.)
#[derive(Clone, Serialize, ToSchema)]
pub struct ExportResponse {
    /// The go-spacemesh key file's content: 128 hex digits.
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Must equal the identity's name.
    pub confirm: Option<String>,
    /// Also delete the private key from the keystore, irreversibly. Default: keep it.
    #[serde(default)]
    pub delete_key: bool,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "name",
            "must be 1 to 64 characters: letters, digits, '.', '_', '-'",
        ))
    }
}

fn parse_hex32(field: &str, s: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| ApiError::invalid_field(field, "must be 64 hex digits"))?;
    Ok(out)
}

struct Sizes {
    num_units: u32,
    labels_per_unit: u64,
    max_file_size: u64,
    scrypt_n: u32,
}

fn check_sizes(s: &Sizes) -> Result<(), ApiError> {
    if s.num_units == 0 || s.num_units > MAX_UNITS {
        return Err(ApiError::invalid_field(
            "num_units",
            format!("must be 1 to {MAX_UNITS}"),
        ));
    }
    if s.labels_per_unit == 0 || s.labels_per_unit > 1 << 40 {
        return Err(ApiError::invalid_field("labels_per_unit", "must be 1 to 2^40"));
    }
    if s.max_file_size < 16 || !s.max_file_size.is_multiple_of(16) {
        return Err(ApiError::invalid_field(
            "max_file_size",
            "must be a positive multiple of 16 bytes",
        ));
    }
    if s.scrypt_n < 2 || !s.scrypt_n.is_power_of_two() {
        return Err(ApiError::invalid_field("scrypt_n", "must be a power of two >= 2"));
    }
    if u64::from(s.num_units).checked_mul(s.labels_per_unit).is_none() {
        return Err(ApiError::invalid_field(
            "num_units",
            "num_units x labels_per_unit overflows",
        ));
    }
    Ok(())
}

fn keystore_error(e: KeystoreError) -> ApiError {
    match e {
        KeystoreError::InvalidKeyHex(inner) => ApiError::invalid_field("key", inner),
        KeystoreError::AlreadyExists { node_id } => ApiError::conflict(
            "identity_exists",
            format!("identity {node_id} is already in the keystore"),
        ),
        KeystoreError::DuplicateIdentity { .. } | KeystoreError::InvalidKeyFile { .. } => {
            ApiError::invalid_field("identities_dir", e)
        }
        KeystoreError::WrongPassphrase => ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_passphrase",
            "the passphrase is wrong",
        ),
        KeystoreError::UnknownIdentity { node_id } => ApiError::not_found(
            "key_not_found",
            format!("the keystore holds no key for {node_id}"),
        ),
        other => ApiError::internal(other),
    }
}

/// Runs a keystore operation (Argon2, file I/O) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeystoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(keystore_error)
}

async fn ensure_name_free(state: &AppState, name: &str) -> ApiResult<()> {
    if state.store().find_identity_by_name(name).await?.is_some() {
        return Err(ApiError::conflict(
            "identity_exists",
            format!("an identity named {name:?} already exists"),
        ));
    }
    Ok(())
}

/// Records a keystore identity in the store; on failure the key just added is removed again, so
/// that no key exists without its record.
async fn record(state: &AppState, node_id: NodeId, new: NewIdentity) -> ApiResult<Identity> {
    match state.store().create_identity(&new, now_ms()).await {
        Ok(identity) => {
            state
                .event(
                    "identity.created",
                    &identity.id.to_string(),
                    json!({"name": identity.name, "node_id": hex::encode(identity.node_id)}),
                )
                .await;
            state.0.wake.notify_one();
            Ok(identity)
        }
        Err(e) => {
            let ks = state.0.keystore.clone();
            if let Err(undo) = blocking(move || ks.delete(&node_id)).await {
                tracing::error!(%node_id, error = %undo, "could not remove the key of a failed create");
            }
            Err(e.into())
        }
    }
}

#[utoipa::path(get, path = "/api/v1/identities", tag = "identities",
    responses((status = 200, body = [IdentityView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<ApiJson<Vec<IdentityView>>> {
    p.require(Role::Viewer)?;
    let all = state.store().list_identities().await?;
    let mut views: Vec<IdentityView> = all.iter().map(IdentityView::from).collect();
    with_node_stats(&state, &mut views).await;
    Ok(ApiJson(views))
}

#[utoipa::path(post, path = "/api/v1/identities", tag = "identities", request_body = CreateIdentity,
    responses((status = 201, body = IdentityView), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateIdentity>,
) -> ApiResult<(StatusCode, ApiJson<IdentityView>)> {
    p.require(Role::Admin)?;
    check_name(&req.name)?;
    let sizes = Sizes {
        num_units: req.num_units,
        labels_per_unit: req.labels_per_unit.unwrap_or(DEFAULT_LABELS_PER_UNIT),
        max_file_size: req.max_file_size.unwrap_or(DEFAULT_MAX_FILE_SIZE),
        scrypt_n: req.scrypt_n.unwrap_or(DEFAULT_SCRYPT_N),
    };
    check_sizes(&sizes)?;
    let commitment = req
        .commitment_atx_id
        .as_deref()
        .map(|s| parse_hex32("commitment_atx_id", s))
        .transpose()?;
    ensure_name_free(&state, &req.name).await?;
    let ks = state.0.keystore.clone();
    let node_id = blocking(move || ks.generate()).await?;
    let new = NewIdentity {
        name: req.name,
        node_id: *node_id.as_bytes(),
        num_units: sizes.num_units,
        labels_per_unit: sizes.labels_per_unit,
        max_file_size: sizes.max_file_size,
        scrypt_n: sizes.scrypt_n,
        commitment_atx_id: commitment,
        coinbase: req.coinbase,
    };
    let identity = record(&state, node_id, new).await?;
    Ok((StatusCode::CREATED, ApiJson(IdentityView::from(&identity))))
}

#[utoipa::path(post, path = "/api/v1/identities/import", tag = "identities", request_body = ImportIdentity,
    responses((status = 201, body = [IdentityView]), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<ImportIdentity>,
) -> ApiResult<(StatusCode, ApiJson<Vec<IdentityView>>)> {
    p.require(Role::Admin)?;
    check_name(&req.name)?;
    let sources = [
        req.key.is_some(),
        req.key_file.is_some(),
        req.identities_dir.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(ApiError::invalid_field(
            "key",
            "give exactly one of key, key_file, identities_dir",
        ));
    }
    // Sizes and commitment: from the PoST metadata when given, else from the request.
    let meta =
        match &req.post_data_dir {
            Some(dir) => {
                if req.identities_dir.is_some() {
                    return Err(ApiError::invalid_field(
                        "post_data_dir",
                        "goes with key or key_file (one identity), not identities_dir",
                    ));
                }
                let dir = PathBuf::from(dir);
                let loaded = tokio::task::spawn_blocking(move || post::metadata::PostMetadata::load(&dir))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(|e| ApiError::invalid_field("post_data_dir", e))?;
                Some(loaded.ok_or_else(|| {
                    ApiError::invalid_field("post_data_dir", "holds no postdata_metadata.json")
                })?)
            }
            None => None,
        };
    let sizes = Sizes {
        num_units: meta
            .as_ref()
            .map(|m| m.num_units)
            .or(req.num_units)
            .ok_or_else(|| ApiError::invalid_field("num_units", "required without post_data_dir"))?,
        labels_per_unit: meta
            .as_ref()
            .map(|m| m.labels_per_unit)
            .or(req.labels_per_unit)
            .unwrap_or(DEFAULT_LABELS_PER_UNIT),
        max_file_size: meta
            .as_ref()
            .map(|m| m.max_file_size)
            .or(req.max_file_size)
            .unwrap_or(DEFAULT_MAX_FILE_SIZE),
        scrypt_n: req.scrypt_n.unwrap_or(DEFAULT_SCRYPT_N),
    };
    check_sizes(&sizes)?;
    let commitment = match (&meta, req.commitment_atx_id.as_deref()) {
        (Some(m), _) => Some(m.commitment_atx_id),
        (None, Some(s)) => Some(parse_hex32("commitment_atx_id", s)?),
        (None, None) => None,
    };

    let ks = state.0.keystore.clone();
    let names_and_ids: Vec<(String, NodeId)> = if let Some(dir) = req.identities_dir.clone() {
        // Check every name first, then import the directory as a whole.
        let listing = std::fs::read_dir(&dir)
            .map_err(|e| ApiError::invalid_field("identities_dir", format!("{dir}: {e}")))?;
        let mut stems = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "key") && path.is_file() {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    stems.push(stem.to_owned());
                }
            }
        }
        stems.sort();
        if stems.is_empty() {
            return Err(ApiError::invalid_field("identities_dir", "holds no *.key file"));
        }
        for s in &stems {
            let name = format!("{}-{s}", req.name);
            check_name(&name)?;
            ensure_name_free(&state, &name).await?;
        }
        let ids = blocking(move || ks.import_identities_dir(&dir)).await?;
        stems
            .into_iter()
            .zip(ids)
            .map(|(s, id)| (format!("{}-{s}", req.name), id))
            .collect()
    } else {
        ensure_name_free(&state, &req.name).await?;
        let text = match (&req.key, &req.key_file) {
            (Some(k), _) => zeroize::Zeroizing::new(k.clone()),
            (None, Some(f)) => zeroize::Zeroizing::new(
                std::fs::read_to_string(f)
                    .map_err(|e| ApiError::invalid_field("key_file", format!("{f}: {e}")))?,
            ),
            (None, None) => return Err(ApiError::invalid_field("key", "missing")),
        };
        // The metadata must belong to this key: compare before anything is stored.
        let expected = meta.as_ref().map(|m| m.node_id);
        let id = blocking(move || {
            let key = text;
            ks.import_key_hex(&key)
        })
        .await?;
        if let Some(expected) = expected {
            if expected != *id.as_bytes() {
                let ks = state.0.keystore.clone();
                let _ = blocking(move || ks.delete(&id)).await;
                return Err(ApiError::invalid_field(
                    "post_data_dir",
                    format!(
                        "its metadata names node id {}, the key is {}",
                        hex::encode(expected),
                        id
                    ),
                ));
            }
        }
        vec![(req.name.clone(), id)]
    };

    let mut out = Vec::new();
    for (name, node_id) in names_and_ids {
        let new = NewIdentity {
            name,
            node_id: *node_id.as_bytes(),
            num_units: sizes.num_units,
            labels_per_unit: sizes.labels_per_unit,
            max_file_size: sizes.max_file_size,
            scrypt_n: sizes.scrypt_n,
            commitment_atx_id: commitment,
            coinbase: req.coinbase.clone(),
        };
        let mut identity = record(&state, node_id, new).await?;
        if let Some(nonce) = meta.as_ref().and_then(|m| m.nonce) {
            let upd = crate::store::IdentityUpdate {
                vrf_nonce: Some(nonce),
                ..Default::default()
            };
            identity = state.store().update_identity(identity.id, &upd, now_ms()).await?;
        }
        out.push(IdentityView::from(&identity));
    }
    with_node_stats(&state, &mut out).await;
    Ok((StatusCode::CREATED, ApiJson(out)))
}

#[utoipa::path(get, path = "/api/v1/identities/{id}", tag = "identities",
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 200, body = IdentityDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<IdentityDetail>> {
    p.require(Role::Viewer)?;
    let store = state.store();
    let identity = store.get_identity(id).await?;
    let files = store.list_identity_files(id).await?;
    let labels_done = store.labels_done(id).await?;
    let mut live = 0u64;
    for s in [crate::store::JobState::Queued, crate::store::JobState::Leased] {
        let f = JobFilter {
            identity_id: Some(id),
            state: Some(s),
            limit: 10_000,
            ..JobFilter::default()
        };
        live += store.list_jobs(&f).await?.len() as u64;
    }
    let mut view = [IdentityView::from(&identity)];
    with_node_stats(&state, &mut view).await;
    let [view] = view;
    Ok(ApiJson(IdentityDetail {
        identity: view,
        labels_done,
        files: files.iter().map(FileView::from).collect(),
        live_jobs: live,
    }))
}

#[utoipa::path(post, path = "/api/v1/identities/{id}/export", tag = "identities", request_body = ExportRequest,
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 200, body = ExportResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ExportRequest>,
) -> ApiResult<ApiJson<ExportResponse>> {
    p.require(Role::Admin)?;
    let identity = state.store().get_identity(id).await?;
    let node_id = NodeId::from_bytes(identity.node_id);
    let ks = state.0.keystore.clone();
    let passphrase = zeroize::Zeroizing::new(req.passphrase);
    let key = blocking(move || ks.export_key_hex(&node_id, &passphrase)).await?;
    state
        .event(
            "identity.exported",
            &id.to_string(),
            json!({"by": p.name(), "node_id": hex::encode(identity.node_id)}),
        )
        .await;
    Ok(ApiJson(ExportResponse { key: key.to_string() }))
}

#[utoipa::path(delete, path = "/api/v1/identities/{id}", tag = "identities",
    params(("id" = Uuid, Path, description = "identity id"), DeleteParams),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeleteParams>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    let identity = state.store().get_identity(id).await?;
    if q.confirm.as_deref() != Some(identity.name.as_str()) {
        return Err(ApiError::invalid_field(
            "confirm",
            format!(
                "must equal the identity's name ({:?}) to delete it",
                identity.name
            ),
        ));
    }
    // Its live jobs stop first (their workers see the cancellation on their next report).
    let now = now_ms();
    for s in [crate::store::JobState::Queued, crate::store::JobState::Leased] {
        let f = JobFilter {
            identity_id: Some(id),
            state: Some(s),
            limit: 100_000,
            ..JobFilter::default()
        };
        for job in state.store().list_jobs(&f).await? {
            match state.store().cancel_job(job.id, now).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    state.store().delete_identity(id).await?;
    if q.delete_key {
        let node_id = NodeId::from_bytes(identity.node_id);
        let ks = state.0.keystore.clone();
        match blocking(move || ks.delete(&node_id)).await {
            Ok(()) => {}
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    state
        .event(
            "identity.deleted",
            &id.to_string(),
            json!({"name": identity.name, "key_deleted": q.delete_key, "by": p.name()}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
