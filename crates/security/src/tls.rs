//! TLS on a node's ports, with rustls (ring; no OpenSSL).
//!
//! - [`server_tls`] builds a port's server settings from its files (`--cert-file`,
//!   `--key-file`, `--trusted-ca-file`, or their `--peer-*` twins), requiring a client
//!   certificate signed by the trusted CA when asked to (always on the peer port).
//! - [`incoming`] accepts connections on a listener, with `TCP_NODELAY`, and does the TLS
//!   handshake (when configured) off the accept loop; each connection carries a
//!   [`ConnInfo`] (remote address, peer certificates) that handlers read from the request's
//!   extensions.
//! - [`client_tls`] and [`connector`] are the other side: a node dialling its peers, or
//!   `quoratectl` dialling a node.
//!
//! The settings are [`Reloadable`]: new connections use the files in force when they are
//! made; connections already open keep theirs.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;

use crate::reload::Reloadable;

/// The TLS files of one port, and the flags that named them (for error messages).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain this side presents (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates the other side's certificate must chain to (PEM).
    pub trusted_ca: Option<PathBuf>,
    /// `""` for the client port's flags, `"peer-"` for the peer port's.
    pub flag_prefix: &'static str,
}

impl TlsFiles {
    fn flag(&self, name: &str) -> String {
        format!("--{}{name}", self.flag_prefix)
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.trusted_ca.clone());
        paths
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn read_roots(path: &Path, flag: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, flag)? {
        roots
            .add(cert)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// Whether a port asks its clients for certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for.
    Ignore,
    /// Checked against the trusted CA when presented; a client without one is let through
    /// (the roles then come from a bearer token).
    Optional,
    /// Required, and checked against the trusted CA.
    Required,
}

/// A port's server settings, built (and rebuilt) from `files`.
pub fn server_tls(
    what: &str,
    files: TlsFiles,
    client_certs: ClientCerts,
) -> Result<Arc<Reloadable<ServerConfig>>, String> {
    if client_certs != ClientCerts::Ignore && files.trusted_ca.is_none() {
        return Err(format!(
            "{} is required to check client certificates",
            files.flag("trusted-ca-file")
        ));
    }
    Reloadable::new(what, files.paths(), move || {
        build_server(&files, client_certs)
    })
}

fn build_server(files: &TlsFiles, client_certs: ClientCerts) -> Result<ServerConfig, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&files.trusted_ca, client_certs) {
        (Some(ca), ClientCerts::Optional | ClientCerts::Required) => {
            let roots = read_roots(ca, &files.flag("trusted-ca-file"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if client_certs == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", files.flag("trusted-ca-file")))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let certs = read_certs(&files.cert, &files.flag("cert-file"))?;
    let key = read_key(&files.key, &files.flag("key-file"))?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not go together: {e}",
            files.flag("cert-file"),
            files.flag("key-file")
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The files of a TLS client: the CA that must have signed the server's certificate, and
/// this side's own certificate and key when the server asks for one.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    /// CA certificates (PEM).
    pub trusted_ca: PathBuf,
    /// This side's certificate chain and key (PEM), if it has one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The flag names, for error messages: (CA, certificate, key).
    pub flags: (&'static str, &'static str, &'static str),
}

/// A TLS client's settings, built (and rebuilt) from `files`.
pub fn client_tls(what: &str, files: ClientFiles) -> Result<Arc<Reloadable<ClientConfig>>, String> {
    let mut paths = vec![files.trusted_ca.clone()];
    if let Some((cert, key)) = &files.identity {
        paths.extend([cert.clone(), key.clone()]);
    }
    Reloadable::new(what, paths, move || build_client(&files))
}

fn build_client(files: &ClientFiles) -> Result<ClientConfig, String> {
    let (ca_flag, cert_flag, key_flag) = files.flags;
    let roots = read_roots(&files.trusted_ca, ca_flag)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert, cert_flag)?, read_key(key, key_flag)?)
            .map_err(|e| format!("{cert_flag} and {key_flag} do not go together: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Peer TLS: one certificate and key serve both sides of a node's peer connections (the
/// server side of its peer port, the client side of the connections it opens), and peers
/// must present certificates signed by the trusted CA.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// The peer port's settings (client certificates required).
    pub server: Arc<Reloadable<ServerConfig>>,
    /// The settings of the connections this node opens to its peers.
    pub client: Arc<Reloadable<ClientConfig>>,
}

impl PeerTls {
    /// Loads `--peer-cert-file`, `--peer-key-file` and `--peer-trusted-ca-file`.
    pub fn load(files: TlsFiles) -> Result<PeerTls, String> {
        let Some(ca) = files.trusted_ca.clone() else {
            return Err(format!(
                "{} is required with peer TLS: peers prove who they are with certificates \
                 signed by it",
                files.flag("trusted-ca-file")
            ));
        };
        let server = server_tls("peer port TLS", files.clone(), ClientCerts::Required)?;
        let client = client_tls(
            "peer connections TLS",
            ClientFiles {
                trusted_ca: ca,
                identity: Some((files.cert, files.key)),
                flags: (
                    "--peer-trusted-ca-file",
                    "--peer-cert-file",
                    "--peer-key-file",
                ),
            },
        )?;
        Ok(PeerTls { server, client })
    }
}

/// What a handler knows about the connection a request came on (in the request's
/// extensions).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The remote address.
    pub remote: Option<SocketAddr>,
    /// The certificates the remote side presented, end-entity first (TLS with client
    /// certificates only); the port's verifier has checked them against its trusted CA.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl ConnInfo {
    /// The connection info of `request`, if it came through [`incoming`].
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&ConnInfo> {
        request.extensions().get::<ConnInfo>()
    }

    /// The end-entity certificate the remote side presented.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.certs.as_ref().and_then(|c| c.first())
    }
}

/// An accepted connection, plain or TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(tcp) => ConnInfo {
                remote: tcp.peer_addr().ok(),
                certs: None,
            },
            Conn::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                ConnInfo {
                    remote: tcp.peer_addr().ok(),
                    certs: session
                        .peer_certificates()
                        .map(|certs| Arc::new(certs.to_vec())),
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections accepted on `listener`, each with `TCP_NODELAY` set, through TLS when
/// `tls` is given (the handshake runs in a task of its own: a slow or silent client holds
/// up no one). A failed handshake is logged with the remote address and the reason.
///
/// Every gRPC server of a node takes its connections from here. (tonic's
/// `Server::builder().tcp_nodelay(true)` applies only to listeners tonic binds itself: an
/// accepted socket would keep Nagle's algorithm, and every response that leaves in two
/// segments would wait for the client's delayed ACK, 40 ms on Linux.)
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Reloadable<ServerConfig>>>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // (Out of file descriptors, say: wait rather than spin.)
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Ok(Conn::Plain(tcp))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Conn::Tls(Box::new(stream)))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake refused")
                    }
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A connector for `tonic::transport::Endpoint::connect_with_connector*`: dials the
/// endpoint's host and port and does the TLS handshake with the settings in force, checking
/// that the server's certificate names that host.
pub fn connector(
    tls: Arc<Reloadable<ClientConfig>>,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = io::Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("{uri}: no port")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host}: not a host name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.get())
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

/// Whether `cert` (a peer's end-entity certificate, already verified against the trusted
/// CA) names `host`, a DNS name or an IP address, in its subject alternative names.
pub fn names_host(cert: &CertificateDer<'_>, host: &str) -> Result<(), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host).map_err(|e| format!("{host}: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the certificate does not name {host}"))
}

/// The host part of a `host:port` address.
pub fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => address,
    }
}

/// The common name of `cert`'s subject, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = cert.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}

#[cfg(any(test, feature = "test-ca"))]
pub mod testing {
    //! A throwaway CA and certificates, made at test time (no key material is committed).

    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };

    /// A CA that signs certificates into a directory.
    #[allow(missing_debug_implementations)]
    pub struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    impl Ca {
        /// A new self-signed CA named `name`.
        pub fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Ca {
                pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// Writes the CA certificate into `dir`; returns its path.
        pub fn write(&self, dir: &Path) -> PathBuf {
            let path = dir.join("ca.pem");
            std::fs::write(&path, &self.pem).unwrap();
            path
        }

        /// A certificate for `common_name` naming `hosts` (DNS names or IPs), for both
        /// server and client use; returns (cert, key) paths.
        pub fn issue(&self, dir: &Path, common_name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            for host in hosts {
                params.subject_alt_names.push(match host.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*host).try_into().unwrap()),
                });
            }
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            let cert_path = dir.join(format!("{common_name}.pem"));
            let key_path = dir.join(format!("{common_name}-key.pem"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Ca;
    use super::*;

    fn der(path: &Path) -> CertificateDer<'static> {
        read_certs(path, "--cert-file").unwrap().remove(0)
    }

    #[test]
    fn a_certificate_names_its_hosts_and_its_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test ca");
        let (cert, _) = ca.issue(dir.path(), "node-1", &["quorate-1", "127.0.0.2"]);
        let cert = der(&cert);
        assert_eq!(names_host(&cert, "quorate-1"), Ok(()));
        assert_eq!(names_host(&cert, "127.0.0.2"), Ok(()));
        assert!(names_host(&cert, "quorate-2").is_err());
        assert!(names_host(&cert, "127.0.0.3").is_err());
        assert_eq!(common_name(&cert).as_deref(), Some("node-1"));
        assert_eq!(host_of("quorate-1:2380"), "quorate-1");
        assert_eq!(host_of("[::1]:2380"), "[::1]");
        assert_eq!(names_host(&cert, host_of("127.0.0.2:2380")), Ok(()));
    }

    #[test]
    fn bad_files_are_refused_with_the_flag_that_named_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test ca");
        let (cert, key) = ca.issue(dir.path(), "node-1", &["localhost"]);
        let (_, other_key) = ca.issue(dir.path(), "node-2", &["localhost"]);
        let files = |cert: &Path, key: &Path, ca: Option<PathBuf>| TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            trusted_ca: ca,
            flag_prefix: "peer-",
        };
        let missing = dir.path().join("missing.pem");
        let e = server_tls("t", files(&missing, &key, None), ClientCerts::Ignore).unwrap_err();
        assert!(e.starts_with("--peer-cert-file "), "{e}");
        let e = server_tls("t", files(&cert, &other_key, None), ClientCerts::Ignore).unwrap_err();
        assert!(e.contains("do not go together"), "{e}");
        let e = server_tls("t", files(&cert, &key, None), ClientCerts::Required).unwrap_err();
        assert!(e.contains("--peer-trusted-ca-file is required"), "{e}");
        let ca_path = ca.write(dir.path());
        server_tls(
            "t",
            files(&cert, &key, Some(ca_path)),
            ClientCerts::Required,
        )
        .unwrap();
    }
}
