//! Who a client is, and what it may call.
//!
//! An identity is the common name of the client's certificate (TLS with client certificates),
//! or the name the roles file gives to a bearer token (`authorization: Bearer <token>`), for
//! deployments without client certificates. The roles file (`--auth-file`) lists identities
//! and their roles:
//!
//! ```toml
//! [[identity]]
//! name = "payments-api"          # a client certificate's common name
//! roles = ["writer", "reader"]
//!
//! [[identity]]
//! name = "oncall"
//! roles = ["admin", "reader"]
//! # The SHA-256 of the bearer token, in hex: the file holds no secret.
//! # (printf %s "$TOKEN" | sha256sum)
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! `writer` may call `PaymentEvents.Submit` and `Leases.*`; `reader` `PaymentEvents.Get`,
//! `List` and `Watch`; `admin` everything in `quorate.admin.v1.Admin`. Health and reflection
//! are open to anyone (probes and `grpcurl` need them). Any other method needs `admin`.
//! Without a roles file every caller may call everything (as before TLS was configured).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use quorate_proto::errors::reason;
use serde::Deserialize;
use sha2::Digest;

use crate::reload::Reloadable;
use crate::tls::{common_name, ConnInfo};

/// What a role allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `PaymentEvents.Get`, `List`, `Watch`.
    Reader,
    /// `PaymentEvents.Submit`, `Leases.*`.
    Writer,
    /// Everything in `Admin`.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

/// The role a method needs; `None` for methods open to anyone.
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = crate::service_and_method(path);
    match (service, method) {
        (s, _) if crate::is_probe(s) => None,
        ("quorate.payments.v1.PaymentEvents", "Get" | "List" | "Watch") => Some(Role::Reader),
        ("quorate.payments.v1.PaymentEvents", "Submit") => Some(Role::Writer),
        ("quorate.payments.v1.Leases", _) => Some(Role::Writer),
        _ => Some(Role::Admin),
    }
}

/// Admin methods that change nothing (logged at debug; the others at info, with who called).
fn is_read_only_admin(method: &str) -> bool {
    matches!(
        method,
        "Status" | "ListMembers" | "HashEvents" | "SplitBrainReport"
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default, rename = "identity")]
    identities: Vec<IdentityEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityEntry {
    name: String,
    roles: Vec<Role>,
    #[serde(default)]
    token_sha256: Option<String>,
}

/// The roles file, loaded.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<String, Vec<Role>>,
    tokens: HashMap<[u8; 32], String>,
}

impl Policy {
    /// Parses a roles file's text; errors name the entry.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut policy = Policy::default();
        for (i, entry) in file.identities.into_iter().enumerate() {
            if entry.name.is_empty() {
                return Err(format!("identity {}: name is empty", i + 1));
            }
            if let Some(hex) = &entry.token_sha256 {
                let digest = parse_sha256(hex).ok_or_else(|| {
                    format!(
                        "identity {:?}: token_sha256 must be 64 hex digits (the SHA-256 of the \
                         token: printf %s \"$TOKEN\" | sha256sum)",
                        entry.name
                    )
                })?;
                if policy.tokens.insert(digest, entry.name.clone()).is_some() {
                    return Err(format!(
                        "identity {:?}: the same token is given to two identities",
                        entry.name
                    ));
                }
            }
            if policy
                .roles
                .insert(entry.name.clone(), entry.roles)
                .is_some()
            {
                return Err(format!("identity {:?} is listed twice", entry.name));
            }
        }
        Ok(policy)
    }

    /// Loads `--auth-file`, and reloads it when it changes.
    pub fn load(path: &Path) -> Result<Arc<Reloadable<Policy>>, String> {
        let file = path.to_path_buf();
        Reloadable::new("roles file (--auth-file)", vec![file.clone()], move || {
            read_policy(&file)
        })
    }

    /// Who made a request: the common name of its verified client certificate, or the
    /// holder of its bearer token.
    fn identify(&self, conn: Option<&ConnInfo>, headers: &http::HeaderMap) -> Option<String> {
        if let Some(name) = conn.and_then(ConnInfo::certificate).and_then(common_name) {
            return Some(name);
        }
        let token = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        self.tokens.get(&digest).cloned()
    }

    fn allows(&self, identity: &str, role: Role) -> bool {
        self.roles
            .get(identity)
            .is_some_and(|roles| roles.contains(&role))
    }
}

fn read_policy(path: &PathBuf) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
    Policy::parse(&text).map_err(|e| format!("--auth-file {}: {e}", path.display()))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The identity a request was made with, in its extensions (for the admission limits and the
/// handlers' logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub String);

/// Checks every call against the roles file; without one, lets every call through.
///
/// The check comes in two steps, each a layer of its own, so the client port can put the
/// cheap one outside its limits and the other inside its spans:
/// - [`AuthLayer::authenticate`] refuses a call without credentials (`UNAUTHENTICATED`) and
///   tells the layers inside who made the others ([`Identity`]). It goes outside the limits
///   of calls, so that a flood of anonymous calls never takes a slot or a place in the queue
///   from authorised callers. Its refusals are counted ([`AuthLayer::unauthenticated`]) and
///   logged at most once a second, with how many there were: a flood must not become a flood
///   of log lines.
/// - [`AuthLayer::authorize`] refuses a caller the roles file does not give the method's role
///   (`PERMISSION_DENIED`), and logs every admin call with who made it. Used without the
///   first step, it identifies the caller itself.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    policy: Option<Arc<Reloadable<Policy>>>,
    step: Step,
    refusals: Arc<Refusals>,
}

/// Which part of the check a layer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Authenticate,
    Authorize,
}

/// The calls refused without credentials, and when that was last logged.
#[derive(Debug, Default)]
struct Refusals {
    total: AtomicU64,
    /// Refused since the last log line.
    unlogged: AtomicU64,
    /// When the last log line was written, in ms since `epoch`.
    logged_at_ms: AtomicU64,
    epoch: OnceLock<Instant>,
}

impl Refusals {
    /// Counts a refusal of a call to `path` from `remote`, and logs it if no refusal was
    /// logged in the last second (with how many were refused since).
    fn count(&self, path: &str, remote: Option<std::net::SocketAddr>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let epoch = *self.epoch.get_or_init(Instant::now);
        // (A second ahead of the clock, so that the first refusal is logged at once.)
        let now = epoch.elapsed().as_millis() as u64 + 1_000;
        let last = self.logged_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000
            || self
                .logged_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let refused = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::info!(
            method = %path,
            remote = ?remote,
            refused_since_last_line = refused,
            "refused calls without credentials (this one, and others since the last such line)"
        );
    }
}

impl AuthLayer {
    /// The first step, on `policy` (None: no roles file, everything allowed): calls without
    /// credentials are refused, the others carry their [`Identity`] on.
    pub fn authenticate(policy: Option<Arc<Reloadable<Policy>>>) -> Self {
        AuthLayer {
            policy,
            step: Step::Authenticate,
            refusals: Arc::default(),
        }
    }

    /// The second step, on the same roles file: the role check of a call the first step let
    /// through.
    pub fn authorize(&self) -> Self {
        AuthLayer {
            step: Step::Authorize,
            ..self.clone()
        }
    }

    /// Calls refused so far for want of credentials.
    pub fn unauthenticated(&self) -> u64 {
        self.refusals.total.load(Ordering::Relaxed)
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(policy) = &self.layer.policy else {
            return Box::pin(self.inner.call(request));
        };
        let Some(role) = required_role(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let step = self.layer.step;
        let policy = policy.get();
        let known = match step {
            // (Told by the first step.)
            Step::Authorize => request.extensions().get::<Identity>().map(|i| i.0.clone()),
            Step::Authenticate => None,
        };
        let identity = match known {
            Some(identity) => identity,
            None => {
                let conn = request.extensions().get::<ConnInfo>();
                let Some(identity) = policy.identify(conn, request.headers()) else {
                    let path = request.uri().path();
                    self.layer.refusals.count(path, conn.and_then(|c| c.remote));
                    let status = crate::status(
                        tonic::Code::Unauthenticated,
                        reason::UNAUTHENTICATED,
                        format!(
                            "{path} needs the {} role: present a client certificate signed by \
                             the node's trusted CA, or a bearer token listed in its roles file",
                            role.name()
                        ),
                        &[("method", path.to_string())],
                        None,
                    );
                    return Box::pin(std::future::ready(Ok(crate::refusal(status))));
                };
                identity
            }
        };
        if step == Step::Authenticate {
            request.extensions_mut().insert(Identity(identity));
            return Box::pin(self.inner.call(request));
        }
        let path = request.uri().path();
        if !policy.allows(&identity, role) {
            tracing::warn!(%identity, method = %path, role = role.name(), "permission denied");
            let status = crate::status(
                tonic::Code::PermissionDenied,
                reason::PERMISSION_DENIED,
                format!(
                    "{identity:?} may not call {path}: it needs the {} role, which the roles \
                     file does not give it",
                    role.name()
                ),
                &[
                    ("identity", identity.clone()),
                    ("method", path.to_string()),
                    ("role", role.name().to_string()),
                ],
                None,
            );
            return Box::pin(std::future::ready(Ok(crate::refusal(status))));
        }
        let (service, method) = crate::service_and_method(path);
        if service == "quorate.admin.v1.Admin" {
            if is_read_only_admin(method) {
                tracing::debug!(%identity, method, "admin call");
            } else {
                tracing::info!(%identity, method, "admin call");
            }
        }
        request.extensions_mut().insert(Identity(identity));
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn each_method_needs_its_role() {
        for (path, role) in [
            (
                "/quorate.payments.v1.PaymentEvents/Submit",
                Some(Role::Writer),
            ),
            ("/quorate.payments.v1.PaymentEvents/Get", Some(Role::Reader)),
            (
                "/quorate.payments.v1.PaymentEvents/List",
                Some(Role::Reader),
            ),
            (
                "/quorate.payments.v1.PaymentEvents/Watch",
                Some(Role::Reader),
            ),
            ("/quorate.payments.v1.Leases/Acquire", Some(Role::Writer)),
            ("/quorate.admin.v1.Admin/Status", Some(Role::Admin)),
            ("/quorate.admin.v1.Admin/RemoveMember", Some(Role::Admin)),
            ("/grpc.health.v1.Health/Check", None),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None,
            ),
            (
                "/quorate.payments.v1.PaymentEvents/Unknown",
                Some(Role::Admin),
            ),
            ("/some.Other/Thing", Some(Role::Admin)),
        ] {
            assert_eq!(required_role(path), role, "{path}");
        }
    }

    #[test]
    fn tokens_map_to_identities_and_roles() {
        let policy = Policy::parse(&format!(
            "[[identity]]\nname = \"api\"\nroles = [\"writer\", \"reader\"]\n\n\
             [[identity]]\nname = \"oncall\"\nroles = [\"admin\"]\ntoken_sha256 = \"{TOKEN_SHA256}\"\n"
        ))
        .unwrap();
        let mut headers = http::HeaderMap::new();
        assert_eq!(policy.identify(None, &headers), None);
        // sha256("test") is TOKEN_SHA256.
        headers.insert(http::header::AUTHORIZATION, "Bearer test".parse().unwrap());
        assert_eq!(policy.identify(None, &headers).as_deref(), Some("oncall"));
        headers.insert(http::header::AUTHORIZATION, "Bearer tesT".parse().unwrap());
        assert_eq!(policy.identify(None, &headers), None, "a wrong token");
        assert!(policy.allows("oncall", Role::Admin));
        assert!(!policy.allows("oncall", Role::Writer));
        assert!(policy.allows("api", Role::Writer));
        assert!(!policy.allows("api", Role::Admin));
        assert!(!policy.allows("nobody", Role::Reader));
    }

    #[test]
    fn a_bad_roles_file_is_refused_with_a_reason() {
        for (text, expect) in [
            (
                "[[identity]]\nname = \"a\"\nroles = [\"root\"]\n",
                "unknown variant",
            ),
            (
                "[[identity]]\nname = \"a\"\nroles = []\ntoken_sha256 = \"ab\"\n",
                "64 hex digits",
            ),
            (
                "[[identity]]\nname = \"a\"\nroles = []\n[[identity]]\nname = \"a\"\nroles = []\n",
                "listed twice",
            ),
            ("[[identity]]\nname = \"a\"\nrole = []\n", "unknown field"),
        ] {
            let e = Policy::parse(text).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
