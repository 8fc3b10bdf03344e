//! Bearer tokens and roles. Tokens are never stored or compared in clear: the coordinator keeps
//! the BLAKE3 hash of each token and compares hashes in constant time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// What a token may do. Ordered: each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything but secrets.
    Viewer,
    /// Also act on jobs, workers and identities' schedules.
    Operator,
    /// Also create, import, export and delete identities; manage tokens and join tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person or tool with an API token.
    User { name: String, role: Role },
    /// An enrolled worker, by its own credential.
    Worker { worker_id: String },
}

impl Principal {
    /// Fail with 403 unless this is a user with at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        match self {
            Principal::User { role: have, .. } if *have >= role => Ok(()),
            _ => Err(ApiError::forbidden(role.as_str())),
        }
    }

    /// Fail with 403 unless this is a worker; returns its id.
    pub fn worker(&self) -> Result<&str, ApiError> {
        match self {
            Principal::Worker { worker_id } => Ok(worker_id),
            _ => Err(ApiError::forbidden("worker")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Principal::User { name, .. } => name.clone(),
            Principal::Worker { worker_id } => format!("worker:{worker_id}"),
        }
    }
}

/// BLAKE3 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(blake3::hash(token.as_bytes()).as_bytes())
}

/// Constant-time equality of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves a presented token to a principal; implemented by the application state.
pub trait TokenResolver: Send + Sync {
    fn resolve(
        &self,
        token: &str,
    ) -> impl std::future::Future<Output = Result<Option<Principal>, ApiError>> + Send;
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
        Some(token.trim())
    } else {
        None
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: TokenResolver,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        state.resolve(token).await?.ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        let op = Principal::User {
            name: "o".into(),
            role: Role::Operator,
        };
        assert!(op.require(Role::Viewer).is_ok());
        assert!(op.require(Role::Operator).is_ok());
        assert_eq!(op.require(Role::Admin).map_err(|e| e.status.as_u16()), Err(403));
        let w = Principal::Worker {
            worker_id: "w1".into(),
        };
        assert!(w.require(Role::Viewer).is_err());
        assert_eq!(w.worker().ok(), Some("w1"));
        assert!(op.worker().is_err());
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(token_hash("abc").len(), 64);
        assert_ne!(token_hash("abc"), token_hash("abd"));
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"sane"));
        assert!(!ct_eq(b"short", b"longer"));
    }
}
