//! The REST API (axum): `/api/v1`, OpenAPI at `/api/openapi.json`, `/healthz`, `/metrics`.

pub mod auth;
pub mod error;
