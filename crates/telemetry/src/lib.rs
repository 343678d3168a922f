//! # quorate-telemetry
//!
//! Everything a node reports, set up in one place:
//!
//! - **Logs** ([`init`]): `tracing` to stderr as text or JSON lines; JSON lines carry the
//!   fields of every span in scope, among them the `trace_id` of the request being served.
//! - **Traces** ([`start_tracing`]): OpenTelemetry spans exported over OTLP/gRPC by a
//!   batch processor, with the resource attributes `service.name=quorate`,
//!   `service.instance.id` and `quorate.cluster.id`. Off unless an endpoint is given.
//! - **Trace context** ([`grpc::GrpcLayer`], [`propagation`]): a tower layer on every gRPC
//!   server reads W3C `traceparent`/`tracestate` from the request metadata and opens the
//!   request's server span (OpenTelemetry RPC conventions); peer messages that serve many
//!   requests carry one `traceparent` per request in their fields.
//! - **Metrics** ([`Metrics`], [`scrape`]): Prometheus histograms and counters recorded where
//!   the work happens, plus the per-scrape values a node derives from its status, encoded in
//!   the Prometheus text format by `prometheus-client`.
#![deny(missing_docs)]

pub mod grpc;
mod logging;
mod metrics;
pub mod propagation;
pub mod scrape;

pub use logging::{
    init, linked_span, shutdown, start_tracing, LinkedSpan, LogFormat, TelemetryError,
    TracingConfig,
};
pub use metrics::{Metrics, SnapshotEvent};
pub use opentelemetry::trace::SpanContext;
pub use prometheus_client::registry::Registry;
