//! `GET /api/stream`: a WebSocket of live statistics and the loop's events, for the dashboard.
//!
//! Authenticated like the rest of `/api`: the key or token comes in `Authorization: Bearer` /
//! `x-api-key`, or, since a browser cannot set headers on a WebSocket, as `?token=` in the
//! query. A client key gets its own tenant's statistics only, as `/api/stats` gives it; loop
//! events (from the audit log) go only to callers who may read the loop's state, as
//! `/api/audit` does.
//!
//! Messages (text frames, JSON):
//! - `{"type": "stats", "stats": <the /api/stats body>}` once a second;
//! - `{"type": "event", "seq", "ts_ms", "kind", "subject", "reason"}` for every audit entry
//!   appended since the previous second (experiment started, adopted, rejected, arm stopped,
//!   rolled back, …); the full entry is in `/api/audit?after=<seq - 1>`;
//! - `{"type": "dropped", "count"}` when this client fell behind and updates were dropped.
//!
//! Design: one [`StreamHub`] per gateway does the work once for every client. It is started by
//! the first client and ends a second after the last one leaves; each second it reads the
//! collector's live statistics (memory only) and tails the audit log (one bounded store read on
//! a blocking thread), then publishes to a `tokio::sync::broadcast` channel. Every client reads
//! that channel at its own pace: the channel keeps at most [`CLIENT_BUFFER`] messages for a
//! client, and a client that falls further behind (a slow network, a stalled tab) skips the
//! oldest, which is counted in `llmopt_stream_dropped_updates_total`. A client therefore never
//! holds back the hub or another client, and its memory is bounded. At most
//! [`MAX_STREAM_CLIENTS`] are connected at once (503 beyond).

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    extract::{
        Query, State,
        ws::{
            CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
        },
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use llmopt_collector::{LiveDimension, LiveStats};
use llmopt_core::AuditEntry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::{
    api::authorize,
    auth::{Access, Caller},
    error::ApiError,
    state::AppState,
};

/// Messages kept for a client that has not read them yet; beyond, the oldest are dropped.
pub const CLIENT_BUFFER: usize = 64;

/// The most clients connected at once.
pub const MAX_STREAM_CLIENTS: usize = 256;

/// Audit entries published per second at most; a longer burst is published over the next
/// seconds (each entry once, in order).
const MAX_EVENTS_PER_TICK: usize = 200;

/// How often statistics are sent.
const TICK: Duration = Duration::from_secs(1);

/// One update of the hub, shared by every client.
#[derive(Debug, Clone)]
enum Update {
    /// The live statistics, and their message already serialised for callers who see every
    /// tenant (serialised once for all of them).
    Stats { stats: Arc<LiveStats>, all_tenants: Arc<str> },
    /// One audit entry's message.
    Event(Arc<str>),
}

/// The shared producer of every stream client's updates.
#[derive(Debug)]
pub struct StreamHub {
    sender: broadcast::Sender<Update>,
    /// Whether the producing task runs. Subscribing and the task's decision to end both hold
    /// this lock, so a client never subscribes to a hub that is about to end without it.
    running: Mutex<bool>,
}

impl Default for StreamHub {
    fn default() -> StreamHub {
        let (sender, _) = broadcast::channel(CLIENT_BUFFER);
        StreamHub { sender, running: Mutex::new(false) }
    }
}

impl StreamHub {
    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    /// A receiver of the next updates; starts the producing task when none runs.
    fn subscribe(&self, state: &AppState) -> broadcast::Receiver<Update> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        if !*running {
            *running = true;
            tokio::spawn(produce(state.clone()));
        }
        receiver
    }
}

/// The hub's task: statistics and new audit entries every [`TICK`], until no client is left.
async fn produce(state: AppState) {
    let hub = state.stream_hub();
    let mut last_seq = match audit_tail(&state).await {
        Ok(seq) => seq,
        Err(error) => {
            tracing::warn!(%error, "stream: cannot read the audit log; events will start at its beginning");
            0
        }
    };
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        {
            let mut running = hub.running.lock().unwrap_or_else(PoisonError::into_inner);
            if hub.sender.receiver_count() == 0 {
                *running = false;
                state.metrics().set_stream_clients(0);
                return;
            }
        }
        state.metrics().set_stream_clients(hub.clients());
        let stats = state.collector().live_stats();
        let all_tenants: Arc<str> = json!({"type": "stats", "stats": &stats}).to_string().into();
        // No receiver left is not an error: the next tick ends the task.
        let _ = hub.sender.send(Update::Stats { stats: Arc::new(stats), all_tenants });
        match new_audit_entries(&state, last_seq).await {
            Ok(entries) => {
                for entry in entries {
                    last_seq = last_seq.max(entry.seq);
                    let _ = hub.sender.send(Update::Event(event_message(&entry).into()));
                }
            }
            Err(error) => tracing::warn!(%error, "stream: cannot read the audit log"),
        }
    }
}

/// The sequence number of the newest audit entry (0: none).
async fn audit_tail(state: &AppState) -> Result<u64, String> {
    let optimizer = state.optimizer().clone();
    tokio::task::spawn_blocking(move || {
        crate::api::control::newest_audit_entries(&optimizer, 1)
            .map(|entries| entries.last().map_or(0, |entry| entry.seq))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn new_audit_entries(state: &AppState, after: u64) -> Result<Vec<AuditEntry>, String> {
    let optimizer = state.optimizer().clone();
    tokio::task::spawn_blocking(move || optimizer.audit_log(after, MAX_EVENTS_PER_TICK))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// An audit entry as a stream message: what a dashboard needs to react, not the whole detail
/// (a proposal's or a workload fit's detail can be large; `/api/audit` has it).
fn event_message(entry: &AuditEntry) -> String {
    let reason = entry
        .detail
        .get("reason")
        .and_then(Value::as_str)
        .map(|reason| reason.chars().take(300).collect::<String>());
    json!({
        "type": "event",
        "seq": entry.seq,
        "ts_ms": entry.ts_ms,
        "kind": entry.kind,
        "subject": entry.subject,
        "reason": reason,
    })
    .to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The key or token, for clients that cannot set headers (browsers).
    token: Option<String>,
}

/// What one client may see.
#[derive(Debug, Clone)]
struct Audience {
    /// Statistics of this tenant only (a client key); `None`: every tenant.
    tenant: Option<String>,
    /// Whether it may read the loop's state (audit events).
    events: bool,
}

/// `GET /api/stream`: upgrades to a WebSocket once the caller is authenticated.
pub async fn stream(
    State(state): State<AppState>,
    mut headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    if let Some(token) = query.token.filter(|token| !token.is_empty()) {
        let has_header =
            headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key");
        if !has_header {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ApiError::unauthorized("invalid API key"))?;
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    let caller = authorize(&state, &headers, Access::Client)?;
    let audience = Audience {
        tenant: caller.only_tenant().map(str::to_owned),
        events: !matches!(caller, Caller::Tenant(_))
            && authorize(&state, &headers, Access::AdminRead).is_ok(),
    };
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            llmopt_core::ErrorKind::InvalidRequest,
            format!("/api/stream is a WebSocket: {}", rejection.body_text()),
        )
    })?;
    if state.stream_hub().clients() >= MAX_STREAM_CLIENTS {
        return Err(ApiError {
            retry_after_s: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                llmopt_core::ErrorKind::Gateway,
                format!("at most {MAX_STREAM_CLIENTS} stream clients at once"),
            )
        });
    }
    let receiver = state.stream_hub().subscribe(&state);
    Ok(upgrade.on_upgrade(move |socket| serve_client(state, socket, receiver, audience)))
}

/// The statistics message for a client key: its tenant's series only, as `/api/stats` does.
fn tenant_stats(stats: &LiveStats, tenant: &str) -> String {
    let own = LiveStats {
        now_ms: stats.now_ms,
        window_ms: stats.window_ms,
        current_window_start_ms: stats.current_window_start_ms,
        series: stats
            .series
            .iter()
            .filter(|series| series.dimension == LiveDimension::Tenant && series.label == tenant)
            .cloned()
            .collect(),
    };
    json!({"type": "stats", "stats": own}).to_string()
}

/// The next message for a client, `None` once the hub is gone. A client that fell more than
/// [`CLIENT_BUFFER`] updates behind gets, instead of what it missed, how many updates it
/// missed (counted in `/metrics`); it goes on from the oldest update still kept.
async fn next_message(
    receiver: &mut broadcast::Receiver<Update>,
    audience: &Audience,
    metrics: &crate::metrics::Metrics,
) -> Option<String> {
    loop {
        match receiver.recv().await {
            Ok(Update::Stats { stats, all_tenants }) => {
                return Some(match &audience.tenant {
                    None => all_tenants.to_string(),
                    Some(tenant) => tenant_stats(&stats, tenant),
                });
            }
            Ok(Update::Event(event)) if audience.events => return Some(event.to_string()),
            Ok(Update::Event(_)) => {}
            Err(broadcast::error::RecvError::Lagged(count)) => {
                metrics.count_stream_dropped(count);
                return Some(json!({"type": "dropped", "count": count}).to_string());
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Forwards the hub's updates to one client until it leaves or the gateway shuts down.
async fn serve_client(
    state: AppState,
    mut socket: WebSocket,
    mut receiver: broadcast::Receiver<Update>,
    audience: Audience,
) {
    loop {
        let message = tokio::select! {
            message = next_message(&mut receiver, &audience, state.metrics()) => match message {
                Some(message) => message,
                None => break,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum; text from the client means nothing here.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if !state.is_ready() {
            break;
        }
        if socket.send(Message::Text(message.into())).await.is_err() {
            return;
        }
    }
    // Shutting down: say so (1001, going away) rather than drop the connection.
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1001,
            reason: "gateway shutting down".into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_falls_behind_is_told_how_many_updates_it_missed_and_they_are_counted() {
        let hub = StreamHub::default();
        let mut receiver = hub.sender.subscribe();
        let metrics = crate::metrics::Metrics::new();
        let audience = Audience { tenant: None, events: true };
        let missed = 10;
        for index in 0..CLIENT_BUFFER + missed {
            hub.sender.send(Update::Event(format!("{{\"n\": {index}}}").into())).unwrap();
        }
        let first = next_message(&mut receiver, &audience, &metrics).await.unwrap();
        assert_eq!(first, json!({"type": "dropped", "count": missed}).to_string());
        // Then the oldest update still kept, and so on: the buffer held the newest ones.
        let next = next_message(&mut receiver, &audience, &metrics).await.unwrap();
        assert_eq!(next, format!("{{\"n\": {missed}}}"));
        let text = metrics.render(
            &llmopt_collector::CollectorMetrics::default(),
            &llmopt_optimizer::LoopMetrics::default(),
            0.0,
            &crate::cache::SharedCacheCounters::default(),
        );
        assert!(text.contains(&format!("llmopt_stream_dropped_updates_total {missed}")), "{text}");
    }

    #[tokio::test]
    async fn events_go_only_to_callers_who_may_read_the_loop() {
        let hub = StreamHub::default();
        let mut receiver = hub.sender.subscribe();
        let metrics = crate::metrics::Metrics::new();
        let tenant = Audience { tenant: Some("a".into()), events: false };
        hub.sender.send(Update::Event("{\"type\": \"event\"}".into())).unwrap();
        let stats =
            LiveStats { now_ms: 5, window_ms: 1, current_window_start_ms: 5, series: Vec::new() };
        hub.sender
            .send(Update::Stats { stats: Arc::new(stats), all_tenants: "every tenant".into() })
            .unwrap();
        let message = next_message(&mut receiver, &tenant, &metrics).await.unwrap();
        let message: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(message["type"], "stats", "the event was skipped, the statistics kept");
        assert_eq!(message["stats"]["now_ms"], 5);
        assert_eq!(message["stats"]["series"], json!([]), "no other tenant's series");
    }
}
