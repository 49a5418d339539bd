//! A scripted upstream on 127.0.0.1: each request takes the next scripted answer (status,
//! headers, body chunks with waits, optional cut) and is recorded for assertions.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Request, Response, StatusCode},
};
use futures::StreamExt;

#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub head_delay: Duration,
    pub chunks: Vec<(Duration, Bytes)>,
    pub cut: bool,
}

impl Scripted {
    pub fn json(status: u16, body: &str) -> Scripted {
        Scripted {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            head_delay: Duration::ZERO,
            chunks: vec![(Duration::ZERO, Bytes::from(body.to_owned()))],
            cut: false,
        }
    }

    pub fn sse(events: &[&str]) -> Scripted {
        Scripted {
            status: 200,
            headers: vec![("content-type", "text/event-stream".to_owned())],
            head_delay: Duration::ZERO,
            chunks: events.iter().map(|e| (Duration::ZERO, Bytes::from(e.to_string()))).collect(),
            cut: false,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Scripted {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<VecDeque<Scripted>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

pub struct Upstream {
    pub base: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(script: Vec<Scripted>) -> Upstream {
        let shared = Shared::default();
        shared.script.lock().unwrap().extend(script);
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { base: format!("http://{addr}"), shared, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Shared>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    shared.received.lock().unwrap().push(Received {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    });
    let Some(scripted) = shared.script.lock().unwrap().pop_front() else {
        return Response::builder().status(599).body(Body::from("script exhausted")).unwrap();
    };
    if !scripted.head_delay.is_zero() {
        tokio::time::sleep(scripted.head_delay).await;
    }
    let cut = scripted.cut;
    let chunks = futures::stream::iter(scripted.chunks).then(|(wait, bytes)| async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok::<Bytes, std::io::Error>(bytes)
    });
    let body = if cut {
        // The cut comes a moment after the last bytes, so that they are flushed first (hyper
        // drops unflushed bytes when a body fails), as when a real upstream dies mid-answer.
        let cut = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("cut"))
        });
        Body::from_stream(chunks.chain(cut))
    } else {
        Body::from_stream(chunks)
    };
    let mut response = Response::builder().status(StatusCode::from_u16(scripted.status).unwrap());
    for (name, value) in scripted.headers {
        response = response.header(name, value);
    }
    response.body(body).unwrap()
}

/// What a stream delivered: forwarded bytes, errors in order, and the final outcome.
pub struct Collected {
    pub bytes: Vec<u8>,
    pub errors: Vec<llmopt_llm::ProviderError>,
    pub outcome: llmopt_llm::StreamOutcome,
    pub ends: usize,
}

pub async fn collect(stream: llmopt_llm::ChatStream) -> Collected {
    let mut items = stream.items;
    let mut collected = Collected {
        bytes: Vec::new(),
        errors: Vec::new(),
        outcome: llmopt_llm::StreamOutcome::default(),
        ends: 0,
    };
    while let Some(item) = items.next().await {
        match item {
            Ok(llmopt_llm::StreamItem::Bytes(bytes)) => {
                assert_eq!(collected.ends, 0, "bytes after End");
                collected.bytes.extend_from_slice(&bytes);
            }
            Ok(llmopt_llm::StreamItem::End(outcome)) => {
                collected.ends += 1;
                collected.outcome = outcome;
            }
            Err(error) => collected.errors.push(error),
        }
    }
    assert_eq!(collected.ends, 1, "exactly one End per stream");
    collected
}
