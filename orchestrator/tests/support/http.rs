//! HTTP helpers for the end-to-end tests and benches that talk to a real coordinator: requests
//! with a bearer token (a failed request panics, naming the URL), and polling an identity.
//! Included with `#[path]` by each binary (not every binary uses every helper).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;

/// POSTs `body` (`None`: no body) with `token`: the status and the JSON answer (Null if none).
pub async fn post_as(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: impl Into<Option<Value>>,
) -> (u16, Value) {
    let mut req = http.post(url).bearer_auth(token);
    if let Some(b) = body.into() {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// [`post_as`] that must succeed (2xx): the JSON answer.
pub async fn post_ok(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: impl Into<Option<Value>>,
) -> Value {
    let (status, v) = post_as(http, url, token, body).await;
    assert!((200..300).contains(&status), "{url}: {status} {v}");
    v
}

/// GETs `url` with `token`: the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let r = http.get(url).bearer_auth(token).send().await.expect("request");
    r.json().await.expect("json")
}

/// GETs `url` with `token`: the text answer.
pub async fn get_text(http: &reqwest::Client, url: &str, token: &str) -> String {
    let r = http.get(url).bearer_auth(token).send().await.expect("request");
    r.text().await.expect("text")
}

/// Polls the identity `id` until `done` says so; fails after `secs`.
pub async fn wait_identity(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get_json(http, &format!("{url}/api/v1/identities/{id}"), token).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "identity not there in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
