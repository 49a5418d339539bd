//! A streamed answer's response body: the provider's bytes forwarded event by event, the call
//! recorded when the stream ends or, if the client goes away first, when hyper drops the body.
//!
//! Either way the record carries the usage seen: a stream cut upstream ends with an outcome
//! holding what the provider had reported, and a body dropped mid-stream reads the same from
//! the stream's shared [`StreamProgress`] (the llm crate's decoder keeps it up to date). Such a
//! record is marked `incomplete`: its usage and cost are a lower bound.

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
use llmopt_llm::{ProviderError, StreamItem, StreamOutcome, StreamProgress};

use super::{
    ProxiedCall,
    forward::{Answered, copy_response_headers, error_kind},
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
    let judge_capture = call.judge_question.is_some().then(BytesMut::new);
    let body = RecordingStream {
        items: stream.items,
        progress: stream.progress,
        call: Some(call),
        candidate,
        upstream_start,
        error: None,
        capture,
        judge_capture,
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
    /// What the stream has seen so far, still readable once `items` is dropped.
    progress: StreamProgress,
    /// `Some` until the record is made.
    call: Option<ProxiedCall>,
    candidate: Candidate,
    upstream_start: Instant,
    /// The first error the stream reported.
    error: Option<ProviderError>,
    /// Bytes kept for the cache while they fit in an entry.
    capture: Option<(CacheKey, BytesMut)>,
    /// Bytes kept for the judge (a call sampled for grading), while under its bound.
    judge_capture: Option<BytesMut>,
    cache_outcome: CacheOutcome,
    done: bool,
}

impl RecordingStream {
    /// The stream ended: with its `End` outcome, or (`None`) without one, in which case what
    /// was seen comes from the progress.
    fn complete(&mut self, outcome: Option<StreamOutcome>) {
        let Some(mut call) = self.call.take() else { return };
        let outcome = match outcome {
            Some(outcome) => {
                call.upstream_time += outcome.elapsed;
                outcome
            }
            None => {
                call.upstream_time += self.upstream_start.elapsed();
                StreamOutcome { complete: false, ..self.progress.snapshot() }
            }
        };
        let status = match (&self.error, outcome.complete) {
            (Some(error), _) => Status::Error(error_kind(error)),
            (None, true) => Status::Ok,
            (None, false) => Status::Error(ErrorKind::InvalidResponse),
        };
        let record = call.answered_record(status, &self.answered(&outcome));
        if let (Some((key, bytes)), Status::Ok) = (self.capture.take(), status) {
            call.cache_answer(key, 200, "text/event-stream".to_owned(), bytes.freeze(), &record);
        }
        call.finish(record);
        if let (Some(bytes), Status::Ok) = (self.judge_capture.take(), status) {
            call.grade(crate::judge::stream_text(call.protocol, &bytes));
        }
    }

    /// The client went away first (hyper dropped the body): the record has the usage seen so
    /// far and is never cached.
    fn disconnected(&mut self) {
        let Some(mut call) = self.call.take() else { return };
        call.upstream_time += self.upstream_start.elapsed();
        let seen = self.progress.snapshot();
        let record = call
            .answered_record(Status::Error(ErrorKind::ClientDisconnected), &self.answered(&seen));
        call.finish(record);
    }

    fn answered(&self, outcome: &StreamOutcome) -> Answered<'_> {
        Answered {
            candidate: &self.candidate,
            served_model: outcome.model.clone().unwrap_or_else(|| self.candidate.model.clone()),
            usage: outcome.usage,
            stop_reason: outcome.stop_reason.clone(),
            first_output: outcome.time_to_first_token,
            upstream_start: self.upstream_start,
            cache_outcome: self.cache_outcome,
            incomplete: !outcome.complete,
        }
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
                if let Some(buffer) = &mut this.judge_capture {
                    // SSE framing is several times the text: an answer over the judge's bound
                    // is dropped here, before it is buffered whole.
                    let limit = this
                        .call
                        .as_ref()
                        .map_or(0, |c| c.runtime.config.judge.max_answer_bytes.saturating_mul(8));
                    if buffer.len() + bytes.len() > limit {
                        this.judge_capture = None;
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
