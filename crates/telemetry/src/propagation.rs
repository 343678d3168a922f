//! W3C trace context (`traceparent`, `tracestate`): read from a caller's gRPC metadata
//! ([`extract`]), and carried in protocol fields.
//!
//! Work that one request causes on another node carries the request's context. The peer
//! messages that do so serve many requests at once (a batch of forwarded writes, an
//! AppendEntries), so they carry one `traceparent` string per request ([`traceparent`],
//! [`remote_context`]) rather than one in their metadata.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context an HTTP/2 request's headers carry (an empty context when none).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Whether `headers` carry a trace context at all.
pub fn has_context(headers: &http::HeaderMap) -> bool {
    headers.contains_key("traceparent")
}

/// The span context of the current `tracing` span, when it belongs to a sampled trace.
pub fn current_sampled() -> Option<SpanContext> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    context.is_sampled().then(|| context.clone())
}

/// The `traceparent` value naming `context` (for a protocol field that carries one context per
/// request), or `None` when the context is not a sampled one.
pub fn traceparent(context: &SpanContext) -> Option<String> {
    if !context.is_valid() || !context.is_sampled() {
        return None;
    }
    let cx = Context::new().with_remote_span_context(context.clone());
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    fields.remove("traceparent")
}

/// The remote span context a `traceparent` value names; `None` for an empty or malformed
/// value (a bad value from a peer costs its trace, nothing else).
pub fn remote_context(traceparent: &str) -> Option<SpanContext> {
    if traceparent.is_empty() {
        return None;
    }
    let fields = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&fields);
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.clone())
}

/// Makes `span` a child of `parent` (a span of this process or another).
pub fn set_parent(span: &tracing::Span, parent: &SpanContext) {
    let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    fn sampled() -> SpanContext {
        SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn a_sampled_context_survives_a_traceparent_round_trip() {
        let value = traceparent(&sampled()).expect("sampled");
        assert_eq!(
            value,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = remote_context(&value).expect("valid");
        assert_eq!(back.trace_id(), sampled().trace_id());
        assert_eq!(back.span_id(), sampled().span_id());
        assert!(back.is_sampled() && back.is_remote());
    }

    #[test]
    fn unsampled_and_malformed_contexts_are_not_carried() {
        let unsampled = SpanContext::new(
            sampled().trace_id(),
            sampled().span_id(),
            TraceFlags::default(),
            true,
            TraceState::default(),
        );
        assert_eq!(traceparent(&unsampled), None);
        assert_eq!(traceparent(&SpanContext::empty_context()), None);
        assert!(remote_context("").is_none());
        assert!(remote_context("00-zz-00f067aa0ba902b7-01").is_none());
    }

    #[test]
    fn headers_are_read_case_insensitively() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert!(has_context(&headers));
        let cx = extract(&headers);
        assert_eq!(cx.span().span_context().trace_id(), sampled().trace_id());
    }
}
