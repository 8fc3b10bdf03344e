//! Encoding and decoding between rows and domain types, shared by every table module.

use std::str::FromStr;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::error::StoreError;

/// Decodes column `name`, reporting a wrong type as a corrupt row.
pub(crate) fn col<T>(row: &AnyRow, name: &'static str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| StoreError::corrupt(name, e.to_string()))
}

pub(crate) fn uuid(row: &AnyRow, name: &'static str) -> Result<Uuid, StoreError> {
    let s: String = col(row, name)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::corrupt(name, format!("{s:?}: {e}")))
}

pub(crate) fn opt_uuid(row: &AnyRow, name: &'static str) -> Result<Option<Uuid>, StoreError> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::corrupt(name, format!("{s:?}: {e}"))))
        .transpose()
}

pub(crate) fn hex32(row: &AnyRow, name: &'static str) -> Result<[u8; 32], StoreError> {
    let s: String = col(row, name)?;
    parse_hex32(&s).ok_or_else(|| StoreError::corrupt(name, format!("{s:?} is not 64 hex digits")))
}

pub(crate) fn opt_hex32(row: &AnyRow, name: &'static str) -> Result<Option<[u8; 32]>, StoreError> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| parse_hex32(&s).ok_or_else(|| StoreError::corrupt(name, format!("{s:?} is not 64 hex digits"))))
        .transpose()
}

pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

pub(crate) fn u64_col(row: &AnyRow, name: &'static str) -> Result<u64, StoreError> {
    let v: i64 = col(row, name)?;
    u64::try_from(v).map_err(|_| StoreError::corrupt(name, format!("{v} is negative")))
}

pub(crate) fn opt_u64(row: &AnyRow, name: &'static str) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = col(row, name)?;
    v.map(|v| u64::try_from(v).map_err(|_| StoreError::corrupt(name, format!("{v} is negative"))))
        .transpose()
}

pub(crate) fn u32_col(row: &AnyRow, name: &'static str) -> Result<u32, StoreError> {
    let v: i64 = col(row, name)?;
    u32::try_from(v).map_err(|_| StoreError::corrupt(name, format!("{v} is out of range for u32")))
}

pub(crate) fn text_enum<E>(row: &AnyRow, name: &'static str) -> Result<E, StoreError>
where
    E: FromStr,
    E::Err: std::fmt::Display,
{
    let s: String = col(row, name)?;
    s.parse::<E>()
        .map_err(|e| StoreError::corrupt(name, e.to_string()))
}

pub(crate) fn json(row: &AnyRow, name: &'static str) -> Result<Value, StoreError> {
    let s: String = col(row, name)?;
    serde_json::from_str(&s).map_err(|e| StoreError::corrupt(name, e.to_string()))
}

pub(crate) fn opt_json(row: &AnyRow, name: &'static str) -> Result<Option<Value>, StoreError> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::corrupt(name, e.to_string())))
        .transpose()
}

/// JSON text of a value (serialising a `Value` cannot fail).
pub(crate) fn json_text(v: &Value) -> String {
    v.to_string()
}

/// A `u64` for a BIGINT column; values above `i64::MAX` are refused.
pub(crate) fn to_i64(what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::invalid(what, format!("{v} is larger than {}", i64::MAX)))
}

/// A value bound into a query built at run time.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// A query whose placeholders are numbered as arguments are pushed.
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Built {
    pub fn new(sql: &str) -> Self {
        Built {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }

    /// Pushes an argument and returns its placeholder (`$n`).
    pub fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    pub fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}
