//! `GET /api/v1/events`: the event log as server-sent events. A client resumes with
//! `Last-Event-ID` (or `?after=`) and misses nothing: ids increase in commit order.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use super::state::AppState;
use crate::store::Event;

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Start after this event id (0: from the oldest kept). `Last-Event-ID` takes precedence.
    pub after: Option<i64>,
    /// History only: at most this many (1..=1000, default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    /// For example `identity.created`, `job.done`, `worker.state`.
    pub kind: String,
    /// The id of what changed.
    pub subject: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: i64,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            kind: e.kind,
            subject: e.subject,
            data: e.data,
            created_at: e.created_at,
        }
    }
}

fn start_after(headers: &HeaderMap, q: &EventQuery) -> ApiResult<i64> {
    if let Some(v) = headers.get("last-event-id") {
        let s = v
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid_header", "Last-Event-ID: not text"))?;
        return s
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("invalid_header", "Last-Event-ID: not an event id"));
    }
    Ok(q.after.unwrap_or(0).max(0))
}

/// Server-sent events: each carries `id`, `event` (the kind) and `data` (an [`EventView`]).
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, description = "text/event-stream of EventView", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    p.require(Role::Viewer)?;
    let mut after = start_after(&headers, &q)?;
    let poll: Duration = state.0.config.event_poll_interval;
    let notify = state.0.events.clone();
    let stream = async_stream::stream! {
        loop {
            // Register interest before reading, so a notification between the read and the wait
            // is not lost.
            let notified = notify.notified();
            let batch = match state.store().list_events_since(after, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the event log failed");
                    Vec::new()
                }
            };
            let full = batch.len() == 500;
            for e in batch {
                after = e.id;
                let id = e.id;
                let kind = e.kind.clone();
                let view = EventView::from(e);
                match SseEvent::default().id(id.to_string()).event(kind).json_data(&view) {
                    Ok(ev) => yield Ok(ev),
                    Err(err) => tracing::warn!(error = %err, id, "event stream: unencodable event"),
                }
            }
            if !full {
                let _ = tokio::time::timeout(poll, notified).await;
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The event log as JSON, for clients that do not stream.
#[utoipa::path(get, path = "/api/v1/events/history", tag = "events", params(EventQuery),
    responses((status = 200, body = [EventView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<ApiJson<Vec<EventView>>> {
    p.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 1000"));
    }
    let events = state
        .store()
        .list_events_since(q.after.unwrap_or(0).max(0), limit)
        .await?;
    Ok(ApiJson(events.into_iter().map(EventView::from).collect()))
}
