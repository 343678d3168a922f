//! The tower layer every gRPC server of a node runs behind: one server span per call, joined
//! to the caller's trace, and the call's latency by service, method and status code.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{GrpcLabels, Metrics};
use crate::propagation;

/// Which calls get a server span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spans {
    /// Every call (the client port: a client request may start a trace, which the sampler
    /// then keeps or not).
    Always,
    /// Only calls that carry a trace context (the peer port: heartbeats and appends start no
    /// trace of their own; work done on behalf of a traced request joins it).
    WhenPropagated,
}

/// Adds the span and the latency metric to every call of the service it wraps.
#[derive(Clone, Debug)]
pub struct GrpcLayer {
    metrics: Metrics,
    spans: Spans,
}

impl GrpcLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics, spans: Spans) -> Self {
        GrpcLayer { metrics, spans }
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`GrpcLayer`].
#[derive(Clone, Debug)]
pub struct GrpcService<S> {
    inner: S,
    layer: GrpcLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = service_and_method(request.uri().path());
        let span = match self.layer.spans {
            Spans::WhenPropagated if !propagation::has_context(request.headers()) => {
                tracing::Span::none()
            }
            _ => {
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = format!("{service}/{method}"),
                    otel.kind = "server",
                    otel.status_code = Empty,
                    rpc.system = "grpc",
                    rpc.service = service,
                    rpc.method = method,
                    rpc.grpc.status_code = Empty,
                    trace_id = Empty,
                );
                let _ = span.set_parent(propagation::extract(request.headers()));
                let context = span.context();
                let trace_id = context.span().span_context().trace_id();
                if trace_id != opentelemetry::trace::TraceId::INVALID {
                    span.record("trace_id", trace_id.to_string());
                }
                span
            }
        };
        let labels = (service.to_string(), method.to_string());
        let metrics = self.layer.metrics.clone();
        let started = Instant::now();
        let call = {
            let _enter = span.enter();
            self.inner.call(request)
        };
        let record = span.clone();
        Box::pin(
            async move {
                let result = call.await;
                let code = match &result {
                    Ok(response) => grpc_code(response),
                    Err(_) => tonic::Code::Unknown,
                };
                record.record("rpc.grpc.status_code", code as i32);
                if is_server_error(code) {
                    record.record("otel.status_code", "error");
                }
                metrics.observe_grpc(
                    &GrpcLabels {
                        grpc_service: labels.0,
                        grpc_method: labels.1,
                        grpc_code: code_name(code),
                    },
                    started.elapsed(),
                );
                result
            }
            .instrument(span),
        )
    }
}

use opentelemetry::trace::TraceContextExt as _;

use quorate_proto::service_and_method;

/// The status of a response: a failed unary call (and any call refused before its body)
/// answers with `grpc-status` in its headers; a successful one carries it in the trailers
/// that follow, and is `OK` here.
fn grpc_code<B>(response: &http::Response<B>) -> tonic::Code {
    if !response.status().is_success() {
        return tonic::Code::Unknown;
    }
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// The codes OpenTelemetry's RPC conventions count as a server's error.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// The code as gRPC's own libraries name it in metrics (`OK`, `Unavailable`, ...).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_comes_from_the_headers_of_a_failed_call() {
        let ok = http::Response::builder().body(()).unwrap();
        assert_eq!(grpc_code(&ok), tonic::Code::Ok);
        let refused = http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        assert_eq!(grpc_code(&refused), tonic::Code::Unavailable);
        assert_eq!(code_name(grpc_code(&refused)), "Unavailable");
        let broken = http::Response::builder().status(500).body(()).unwrap();
        assert_eq!(grpc_code(&broken), tonic::Code::Unknown);
    }
}
