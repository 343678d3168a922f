//! What guards a Quorate node's ports.
//!
//! - [`tls`]: TLS on the client and peer ports (rustls), with certificate files reloaded on
//!   SIGHUP or when they change; the accepted connections carry the peer's certificates, and
//!   [`tls::names_host`] checks that a peer's certificate names the member it claims to be.
//! - [`auth`]: who a client is (its certificate's common name, or a bearer token) and what
//!   its roles allow (`reader`, `writer`, `admin`), as a tower layer on the client port.
//! - [`admission`]: the client port's limits (requests in flight, a bounded queue, open
//!   `Watch` streams per node and per client), as a tower layer that sheds the excess with
//!   `RESOURCE_EXHAUSTED` and a retry hint instead of queueing without bound.
//! - [`reload`]: files re-read without a restart.

pub mod admission;
pub mod auth;
pub mod reload;
pub mod tls;

pub(crate) use quorate_proto::service_and_method;

/// A gRPC status with a Quorate `reason` and `metadata` in its `ErrorInfo`, and a retry hint
/// when `retry_after` is given.
pub(crate) fn status(
    code: tonic::Code,
    reason: &str,
    message: String,
    metadata: &[(&str, String)],
    retry_after: Option<std::time::Duration>,
) -> tonic::Status {
    quorate_proto::errors::status_with(code, reason, message, metadata, |details| {
        if retry_after.is_some() {
            details.set_retry_info(retry_after);
        }
    })
}

/// A status as the HTTP response of a refused call (grpc-status in the headers, no body).
pub(crate) fn refusal(status: tonic::Status) -> http::Response<tonic::body::Body> {
    status.into_http()
}

/// Services open to anyone and never limited: health checks and reflection (probes and
/// `grpcurl` must work on an overloaded or locked-down node).
pub(crate) fn is_probe(service: &str) -> bool {
    service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.")
}
