//! The process-wide subscriber: logs to stderr, and OpenTelemetry once a node knows enough
//! to start it.

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of every span in scope (`trace_id` among
    /// them while a request is served).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter {
        /// The `--otlp-endpoint` given.
        endpoint: String,
        /// What the exporter said.
        reason: String,
    },
    /// Tracing was started twice.
    #[error("tracing is already running")]
    AlreadyStarted,
    /// [`init`] was not called with a sampling ratio.
    #[error("tracing was not set up when the process started")]
    NotSetUp,
}

/// Where traces go, and what the spans say about their node.
#[derive(Clone, Debug)]
pub struct TracingConfig {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    pub endpoint: String,
    /// `service.instance.id`: this node (e.g. `node-1`).
    pub instance_id: String,
    /// `quorate.cluster.id`: the cluster's id, in hex.
    pub cluster_id: String,
}

/// The span processor the tracer provider is built with at [`init`], before the node knows
/// its cluster: it drops spans until [`start_tracing`] gives it the batch processor that
/// exports them (with the resource that names the node and its cluster).
#[derive(Clone, Debug, Default)]
struct Deferred(Arc<OnceLock<BatchSpanProcessor>>);

impl SpanProcessor for Deferred {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        if let Some(batch) = self.0.get() {
            batch.on_start(span, cx);
        }
    }

    fn on_end(&self, span: SpanData) {
        if let Some(batch) = self.0.get() {
            batch.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.get().map_or(Ok(()), SpanProcessor::force_flush)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0
            .get()
            .map_or(Ok(()), |batch| batch.shutdown_with_timeout(timeout))
    }
}

/// The process's tracing: the provider the subscriber's OpenTelemetry layer uses, and the
/// processor that starts exporting once the node knows its cluster.
struct Telemetry {
    provider: SdkTracerProvider,
    exporting: Deferred,
    tracer: SdkTracer,
}

/// How much is traced: what the parent decided, for a span that has one; every span of work
/// done for a sampled request it is linked to (a batch); the ratio for the rest.
#[derive(Clone, Debug)]
struct Sampling {
    parent_or_ratio: Sampler,
}

impl ShouldSample for Sampling {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let root = parent.is_none_or(|cx| !cx.has_active_span());
        if root && links.iter().any(|l| l.span_context.is_sampled()) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: Default::default(),
            };
        }
        self.parent_or_ratio
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// A span of work done once for many requests (one fsync, one apply), linked to each sampled
/// request it served rather than parented by one of them; it ends when dropped. Nothing when
/// none of them is sampled or tracing is off.
#[must_use = "the span ends when dropped"]
pub struct LinkedSpan(Option<opentelemetry_sdk::trace::Span>);

impl std::fmt::Debug for LinkedSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LinkedSpan"
        } else {
            "LinkedSpan(none)"
        })
    }
}

/// Opens a [`LinkedSpan`] named `name`, linked to every context of `links`.
pub fn linked_span(
    name: &'static str,
    links: &[opentelemetry::trace::SpanContext],
    attributes: &[(&'static str, i64)],
) -> LinkedSpan {
    let Some(telemetry) = TELEMETRY.get().filter(|_| !links.is_empty()) else {
        return LinkedSpan(None);
    };
    let span = opentelemetry::trace::SpanBuilder::from_name(name)
        .with_kind(opentelemetry::trace::SpanKind::Internal)
        .with_attributes(attributes.iter().map(|&(k, v)| KeyValue::new(k, v)))
        .with_links(
            links
                .iter()
                .map(|c| opentelemetry::trace::Link::with_context(c.clone()))
                .collect(),
        )
        .start_with_context(&telemetry.tracer, &opentelemetry::Context::new());
    LinkedSpan(Some(span))
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Installs the process-wide subscriber: `filter` (RUST_LOG syntax; `info` when it does not
/// parse) and `format`, on stderr; with `sampling_ratio` (the share of traces this node starts
/// that are kept, 0 to 1; a request whose caller sent a sampled `traceparent` is always
/// traced), an OpenTelemetry layer too, whose spans are exported once [`start_tracing`]
/// runs. A second call changes nothing (the first subscriber stays).
pub fn init(filter: &str, format: LogFormat, sampling_ratio: Option<f64>) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let tracing = sampling_ratio.map(|ratio| {
        let exporting = Deferred::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampling {
                parent_or_ratio: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    ratio.clamp(0.0, 1.0),
                ))),
            })
            .with_span_processor(exporting.clone())
            .build();
        let tracer = provider.tracer("quorate");
        Telemetry {
            provider,
            exporting,
            tracer,
        }
    });
    let otel = tracing
        .as_ref()
        .map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer.clone()));
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok();
    if let (true, Some(tracing)) = (installed, tracing) {
        let _ = TELEMETRY.set(tracing);
    }
}

/// Starts exporting spans over OTLP/gRPC, as the node `config` names. Must run inside a tokio
/// runtime (the exporter's channel lives on it), after [`init`] with a sampling ratio.
pub fn start_tracing(config: &TracingConfig) -> Result<(), TelemetryError> {
    let telemetry = TELEMETRY.get().ok_or(TelemetryError::NotSetUp)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: config.endpoint.clone(),
            reason: e.to_string(),
        })?;
    let resource = Resource::builder()
        .with_service_name("quorate")
        .with_attributes([
            KeyValue::new("service.instance.id", config.instance_id.clone()),
            KeyValue::new("quorate.cluster.id", config.cluster_id.clone()),
        ])
        .build();
    let mut batch = BatchSpanProcessor::builder(exporter).build();
    batch.set_resource(&resource);
    telemetry
        .exporting
        .0
        .set(batch)
        .map_err(|_| TelemetryError::AlreadyStarted)
}

/// Sends the spans still buffered and stops the exporter (once, before the process exits;
/// nothing when tracing never started).
pub fn shutdown() {
    if let Some(telemetry) = TELEMETRY.get() {
        if telemetry.exporting.0.get().is_some() {
            if let Err(e) = telemetry.provider.shutdown() {
                eprintln!("warning: traces not all exported: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_refuse_with_the_choices() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let e = "xml".parse::<LogFormat>().unwrap_err();
        assert!(e.contains("text or json"), "{e}");
    }
}
