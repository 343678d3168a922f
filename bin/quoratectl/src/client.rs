//! Connections to the nodes and the error reporting shared by every command.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Result};
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// What every command needs.
pub struct Context {
    /// Node client addresses.
    pub endpoints: Vec<String>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// JSON output.
    pub json: bool,
}

impl Context {
    /// A channel to one endpoint (connects now, so an unreachable node fails fast).
    pub async fn channel(&self, endpoint: &str) -> Result<Channel> {
        let uri = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| anyhow!("{endpoint}: {e}"))?
            .connect_timeout(self.timeout.min(Duration::from_secs(2)))
            .timeout(self.timeout)
            .connect()
            .await
            .map_err(|e| anyhow!("{endpoint}: cannot connect ({e})"))?;
        Ok(channel)
    }

    /// A payments client for one endpoint.
    pub async fn payments(&self, endpoint: &str) -> Result<PaymentEventsClient<Channel>> {
        Ok(PaymentEventsClient::new(self.channel(endpoint).await?))
    }

    /// An admin client for one endpoint.
    pub async fn admin(&self, endpoint: &str) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(endpoint).await?))
    }

    /// Makes one admin call on `endpoint`; a failure to connect or an error status becomes a
    /// message that names the endpoint.
    pub async fn ask_admin<T, F, Fut>(&self, endpoint: &str, call: F) -> Result<T, String>
    where
        F: FnOnce(AdminClient<Channel>) -> Fut,
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

/// The machine-readable reason of a Quorate error status, if it has one.
pub fn reason(status: &tonic::Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

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
    format!("{text}: {}", status.message())
}

/// Whether a failed write may be retried elsewhere with the same idempotency key (the
/// contract's rule, `quorate_proto::errors::retryable`).
pub fn retryable(status: &tonic::Status) -> bool {
    quorate_proto::errors::retryable(reason(status).as_deref(), status.code())
}
