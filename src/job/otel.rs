//! OpenTelemetry across the queue (feature `opentelemetry`): the client writes the current
//! trace context into each payload as a W3C `traceparent` string under the key
//! [`TRACEPARENT`], and the server makes the job's span a child of it, so a job's span sits
//! under the request that enqueued it, in another process and after a trip through Ruby
//! (Sidekiq leaves keys it does not know alone). Install `tracing-opentelemetry`'s layer with
//! your tracer provider in both processes; without one nothing is written.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The payload key holding the W3C trace context (`00-TRACEID-SPANID-FLAGS`).
pub const TRACEPARENT: &str = "traceparent";

/// The current span's context as a `traceparent`, if there is a valid one.
pub(crate) fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the context in `traceparent` (ignored when malformed).
pub(crate) fn continue_from(span: &tracing::Span, traceparent: &str) {
    let Some(remote) = parse(traceparent) else {
        return;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    let _ = span.set_parent(cx);
}

/// Reads `00-{32 hex}-{16 hex}-{2 hex}`.
fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// The payload's `traceparent` value, found without parsing the whole payload.
pub(crate) fn traceparent_in(payload: &str) -> Option<&str> {
    let key = "\"traceparent\":\"";
    let at = payload.find(key)? + key.len();
    let rest = &payload[at..];
    rest.get(..rest.find('"')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_strictly() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(tp).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled());
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
        assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse("garbage").is_none());
        let payload = format!(r#"{{"class":"X","traceparent":"{tp}","args":[]}}"#);
        assert_eq!(traceparent_in(&payload), Some(tp));
    }
}
