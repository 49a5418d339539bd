//! A streamed answer's response body: the provider's bytes forwarded event by event, the call
//! recorded when the stream ends or, if the client goes away first, when hyper drops the body.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, stream::BoxStream};
use llmopt_core::{CacheOutcome, ErrorKind, Status, usage::Protocol};
use llmopt_llm::{ProviderError, StreamItem, StreamOutcome};

use super::{
    ProxiedCall,
    forward::{Answered, copy_response_headers, error_kind},
    micros,
};
use crate::{cache::CacheKey, routing::Candidate};

pub(super) fn stream_response(
    call: ProxiedCall,
    candidate: Candidate,
    upstream_start: Instant,
    stream: llmopt_llm::ChatStream,
    cache_key: Option<CacheKey>,
    cache_outcome: CacheOutcome,
) -> Response {
    let mut response_headers = HeaderMap::new();
    copy_response_headers(&mut response_headers, &stream.headers);
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    call.add_headers(&mut response_headers, Some(&candidate.model), cache_outcome);
    let status = StatusCode::from_u16(stream.status).unwrap_or(StatusCode::OK);
    let capture = cache_key.map(|key| (key, BytesMut::new()));
    let body = RecordingStream {
        items: stream.items,
        call: Some(call),
        candidate,
        upstream_start,
        error: None,
        capture,
        cache_outcome,
        done: false,
    };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The response body of a stream: forwards the provider's bytes and records the call when the
/// stream ends, or, if the client goes away first, when hyper drops the body.
struct RecordingStream {
    items: BoxStream<'static, Result<StreamItem, ProviderError>>,
    /// `Some` until the record is made.
    call: Option<ProxiedCall>,
    candidate: Candidate,
    upstream_start: Instant,
    /// The first error the stream reported.
    error: Option<ProviderError>,
    /// Bytes kept for the cache while they fit in an entry.
    capture: Option<(CacheKey, BytesMut)>,
    cache_outcome: CacheOutcome,
    done: bool,
}

impl RecordingStream {
    fn complete(&mut self, outcome: Option<StreamOutcome>) {
        let Some(mut call) = self.call.take() else { return };
        let outcome_complete = outcome.as_ref().is_some_and(|o| o.complete);
        let status = match (&self.error, outcome_complete) {
            (Some(error), _) => Status::Error(error_kind(error)),
            (None, true) => Status::Ok,
            (None, false) => Status::Error(ErrorKind::InvalidResponse),
        };
        call.upstream_time +=
            outcome.as_ref().map_or_else(|| self.upstream_start.elapsed(), |o| o.elapsed);
        let answered = Answered {
            candidate: &self.candidate,
            served_model: outcome
                .as_ref()
                .and_then(|o| o.model.clone())
                .unwrap_or_else(|| self.candidate.model.clone()),
            usage: outcome.as_ref().and_then(|o| o.usage),
            stop_reason: outcome.as_ref().and_then(|o| o.stop_reason.clone()),
            first_output: outcome.as_ref().and_then(|o| o.time_to_first_token),
            upstream_start: self.upstream_start,
            cache_outcome: self.cache_outcome,
        };
        let record = call.answered_record(status, &answered);
        if let (Some((key, bytes)), Status::Ok) = (self.capture.take(), status) {
            call.cache_answer(key, 200, "text/event-stream".to_owned(), bytes.freeze(), &record);
        }
        call.finish(record);
    }

    fn disconnected(&mut self) {
        let Some(mut call) = self.call.take() else { return };
        call.upstream_time += self.upstream_start.elapsed();
        let mut record = call.record(
            &self.candidate.provider,
            &self.candidate.model,
            Status::Error(ErrorKind::ClientDisconnected),
        );
        record.cache = self.cache_outcome;
        record.upstream_us = Some(micros(call.upstream_time).min(record.latency_us));
        call.finish(record);
    }
}

impl Stream for RecordingStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.items.poll_next_unpin(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(StreamItem::Bytes(bytes)))) => {
                if let Some((_, buffer)) = &mut this.capture {
                    let limit = this.call.as_ref().map_or(0, |c| c.runtime.cache.max_entry_bytes);
                    if buffer.len() + bytes.len() > limit {
                        // Too big for the cache: stop copying.
                        this.capture = None;
                    } else {
                        buffer.extend_from_slice(&bytes);
                    }
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Ok(StreamItem::End(outcome)))) => {
                this.done = true;
                this.complete(Some(outcome));
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                // Tell the client in its protocol's stream shape, then wait for the End item.
                let protocol = this.call.as_ref().map_or(Protocol::OpenAi, |c| c.protocol);
                let event = stream_error_event(protocol, &error);
                this.capture = None;
                if this.error.is_none() {
                    this.error = Some(error);
                }
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(None) => {
                this.done = true;
                if this.error.is_none() {
                    this.error = Some(ProviderError::InvalidResponse(
                        "stream ended without its end marker".to_owned(),
                    ));
                }
                this.complete(None);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if self.call.is_some() {
            self.disconnected();
        }
    }
}

/// An error event as each protocol's SDK expects it inside a stream.
fn stream_error_event(protocol: Protocol, error: &ProviderError) -> Bytes {
    let message = error.to_string();
    match protocol {
        Protocol::OpenAi => {
            let body = serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": error_kind(error).as_str()}});
            Bytes::from(format!("data: {body}\n\n"))
        }
        Protocol::Anthropic => {
            let body = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}});
            Bytes::from(format!("event: error\ndata: {body}\n\n"))
        }
    }
}
