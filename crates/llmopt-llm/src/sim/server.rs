//! The simulator as an HTTP server on a local socket, for demos, benches and end-to-end tests.
//! Built on hyper directly (only the binary crate may depend on axum). Routes:
//! `POST /v1/chat/completions` (and `/chat/completions`) in the OpenAI format,
//! `POST /v1/messages` in the Anthropic format, `GET /health`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{Request, Response, body::Frame, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use llmopt_core::usage::Protocol;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::engine::{SimEngine, SimReply};
use crate::error::{Error, Result};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// How long a cut stream's connection stays open after its last event.
const CUT_AFTER_FLUSH: Duration = Duration::from_millis(20);

/// A running simulated server. Stops accepting when dropped or shut down.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    engine: Arc<SimEngine>,
}

impl SimServer {
    /// Binds `addr` (use port 0 for any free port) and serves until shut down.
    pub async fn start(engine: Arc<SimEngine>, addr: SocketAddr) -> Result<SimServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| Error::Server(format!("cannot bind {addr}: {error}")))?;
        let addr = listener
            .local_addr()
            .map_err(|error| Error::Server(format!("no local address: {error}")))?;
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let serving = Arc::clone(&engine);
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stop => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((socket, _peer)) = accepted else { continue };
                // Without TCP_NODELAY, small SSE events wait for delayed ACKs (~40 ms).
                let _ = socket.set_nodelay(true);
                let engine = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&engine), request));
                    if let Err(error) =
                        http1::Builder::new().serve_connection(TokioIo::new(socket), service).await
                    {
                        tracing::debug!(%error, "simulated server connection ended");
                    }
                });
            }
        });
        Ok(SimServer { addr, shutdown: Some(shutdown), task, engine })
    }

    /// Binds a free port on 127.0.0.1.
    pub async fn start_local(engine: Arc<SimEngine>) -> Result<SimServer> {
        SimServer::start(engine, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for [`crate::OpenAiConfig`] (ends in `/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for [`crate::AnthropicConfig`].
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn engine(&self) -> &Arc<SimEngine> {
        &self.engine
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: u16, headers: &[(String, String)], body: Bytes) -> Response<Body> {
    let mut response =
        Response::new(Full::new(body).map_err(|never: Infallible| match never {}).boxed_unsync());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn sleep_unless_zero(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

async fn handle(
    engine: Arc<SimEngine>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let protocol = match (request.method().as_str(), request.uri().path()) {
        ("POST", "/v1/chat/completions" | "/chat/completions") => Protocol::OpenAi,
        ("POST", "/v1/messages") => Protocol::Anthropic,
        ("GET", "/health") => return Ok(full(200, &[], Bytes::from_static(b"ok"))),
        _ => return Ok(full(404, &[], Bytes::from_static(b"{\"error\":\"not found\"}"))),
    };
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(full(400, &[], Bytes::from_static(b"{\"error\":\"unreadable body\"}")));
        }
    };
    Ok(match engine.reply(protocol, &body) {
        SimReply::Whole { status, headers, body, delay } => {
            sleep_unless_zero(delay).await;
            full(status, &headers, body)
        }
        SimReply::Stream { headers, events, cut_after, head_delay } => {
            sleep_unless_zero(head_delay).await;
            let keep = cut_after.unwrap_or(events.len());
            let cut = cut_after.is_some();
            let timed = futures::stream::iter(events.into_iter().take(keep)).then(
                |(wait, bytes): (Duration, Bytes)| async move {
                    sleep_unless_zero(wait).await;
                    Ok::<Frame<Bytes>, std::io::Error>(Frame::data(bytes))
                },
            );
            // An error from the body makes hyper drop the connection without the final chunk:
            // the client sees the stream break, as with a real upstream failing mid-answer.
            // The error comes a moment after the last event (unscaled), so that hyper has flushed
            // the events before it drops the connection.
            let frames = if cut {
                let cut = futures::stream::once(async {
                    tokio::time::sleep(CUT_AFTER_FLUSH).await;
                    Err(std::io::Error::other("simulated cut"))
                });
                timed.chain(cut).boxed()
            } else {
                timed.boxed()
            };
            let mut response = full(200, &headers, Bytes::new());
            *response.body_mut() = StreamBody::new(frames).boxed_unsync();
            response
        }
    })
}
