//! Connections to the nodes and the error reporting shared by every command.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use quorate_security::reload::Reloadable;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// A connection to a node, carrying the bearer token (if any) on every call.
pub type Conn = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    token: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// How to reach the nodes securely: `--cacert`, `--cert`, `--key`, `--token-file`.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// TLS settings (none: plain TCP).
    pub tls: Option<std::sync::Arc<Reloadable<rustls::ClientConfig>>>,
    /// The bearer token.
    pub credentials: Credentials,
}

impl Security {
    /// Loads the files the flags name.
    pub fn load(
        cacert: Option<std::path::PathBuf>,
        cert: Option<std::path::PathBuf>,
        key: Option<std::path::PathBuf>,
        token_file: Option<std::path::PathBuf>,
    ) -> Result<Security> {
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(anyhow!("--cert and --key go together")),
        };
        let tls = match cacert {
            Some(ca) => Some(
                quorate_security::tls::client_tls(
                    "TLS",
                    quorate_security::tls::ClientFiles {
                        trusted_ca: ca,
                        identity,
                        flags: ("--cacert", "--cert", "--key"),
                    },
                )
                .map_err(anyhow::Error::msg)?,
            ),
            None if identity.is_some() => {
                return Err(anyhow!(
                    "--cert and --key need --cacert (the CA that signed the nodes' certificates)"
                ))
            }
            None => None,
        };
        let token = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("--token-file {}", path.display()))?;
                let value = format!("Bearer {}", text.trim())
                    .parse()
                    .map_err(|_| anyhow!("--token-file {}: not a valid token", path.display()))?;
                Some(value)
            }
            None => None,
        };
        Ok(Security {
            tls,
            credentials: Credentials { token },
        })
    }
}

/// What every command needs.
pub struct Context {
    /// Node client addresses.
    pub endpoints: Vec<String>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// JSON output.
    pub json: bool,
    /// TLS and credentials.
    pub security: Security,
}

impl Context {
    /// A connection to one endpoint (connects now, so an unreachable node fails fast).
    pub async fn channel(&self, endpoint: &str) -> Result<Conn> {
        self.channel_with_timeout(endpoint, self.timeout).await
    }

    /// [`Self::channel`] with its own deadline per call (a long stream).
    pub async fn channel_with_timeout(&self, endpoint: &str, timeout: Duration) -> Result<Conn> {
        let address = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, address)| address);
        let builder = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| anyhow!("{endpoint}: {e}"))?
            .connect_timeout(self.timeout.min(Duration::from_secs(2)))
            .timeout(timeout);
        let connected = match &self.security.tls {
            Some(tls) => {
                builder
                    .connect_with_connector(quorate_security::tls::connector(tls.clone()))
                    .await
            }
            None => builder.connect().await,
        };
        let channel =
            connected.map_err(|e| anyhow!("{endpoint}: cannot connect ({})", chain(&e)))?;
        Ok(InterceptedService::new(
            channel,
            self.security.credentials.clone(),
        ))
    }

    /// A payments client for one endpoint.
    pub async fn payments(&self, endpoint: &str) -> Result<PaymentEventsClient<Conn>> {
        Ok(PaymentEventsClient::new(self.channel(endpoint).await?))
    }

    /// An admin client for one endpoint.
    pub async fn admin(&self, endpoint: &str) -> Result<AdminClient<Conn>> {
        Ok(AdminClient::new(self.channel(endpoint).await?))
    }

    /// Makes one admin call on `endpoint`; a failure to connect or an error status becomes a
    /// message that names the endpoint.
    pub async fn ask_admin<T, F, Fut>(&self, endpoint: &str, call: F) -> Result<T, String>
    where
        F: FnOnce(AdminClient<Conn>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self.admin(endpoint).await {
            Ok(client) => call(client)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| format!("{endpoint}: {}", describe(&s))),
            // The connection error names the endpoint already.
            Err(e) => Err(e.to_string()),
        }
    }
}

/// An error and its causes, on one line (a TLS failure is the cause of a connect error).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// The contract's reading of a failed call: its reason, and whether a write may be retried
/// elsewhere with the same idempotency key (`quorate_proto::errors`).
pub use quorate_proto::errors::{reason_of as reason, status_retryable as retryable};

/// A one-line description of a failed call: code, reason, message, and the field or leader
/// when the status names one.
pub fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}", status.code());
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        text += &format!(" {}", info.reason);
        for (key, value) in &info.metadata {
            text += &format!(" {key}={value}");
        }
    }
    if let Some(bad) = details.bad_request() {
        let named = details.error_info().map(|i| &i.metadata);
        for violation in &bad.field_violations {
            // ErrorInfo names the field already (metadata `field`): say it once.
            if named.and_then(|m| m.get("field")) != Some(&violation.field) {
                text += &format!(" field={}", violation.field);
            }
        }
    }
    format!("{text}: {}{}", status.message(), hint(status))
}

/// What a bare transport failure (no reason: the node never answered the call) most likely
/// means, where the symptom is known.
fn hint(status: &tonic::Status) -> &'static str {
    if status.get_error_details().error_info().is_some() {
        return "";
    }
    let message = status.message();
    if message.contains("h2 protocol error") {
        // A TLS port answers a plain-text HTTP/2 preface with a TLS alert.
        " (a node that serves TLS answers a client without TLS this way: pass --cacert)"
    } else if message == "transport error" {
        " (the connection broke; if the node requires client certificates, pass --cert and \
         --key)"
    } else {
        ""
    }
}
