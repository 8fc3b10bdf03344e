//! Calling the coordinator's router in process (no socket): a request with an optional bearer
//! token and JSON body, and the answer's status, JSON (Null if none) and text. Included with
//! `#[path]` by the API test binaries.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

/// Sends a built request.
pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp { status, body, text }
}

/// `method uri` with `token` as bearer and `body` as JSON.
pub async fn call(app: &Router, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    send(app, req).await
}

/// A new API token of `role`, made with the admin token `admin`.
pub async fn token(app: &Router, admin: &str, role: &str) -> String {
    let r = call(
        app,
        Method::POST,
        "/api/v1/tokens",
        Some(admin),
        Some(serde_json::json!({"name": format!("{role}-tool"), "role": role})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["token"].as_str().expect("token").to_owned()
}
