//! gRPC over `h2` itself, with no client library in between: one encoded message, four
//! headers, the status read from the trailers. For two purposes: a load generator lean enough
//! that one CPU offers many times what the nodes serve (the `overload` benchmark), and calls
//! whose deadline only the node enforces (tonic's client enforces `grpc-timeout` itself, and
//! would answer for the node).

use std::time::Duration;

use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};

/// An HTTP/2 connection to `address` (no TLS), its connection task spawned.
pub async fn connect(address: &str) -> Result<h2::client::SendRequest<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(tcp)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// A gRPC message: uncompressed flag, length, protobuf.
pub fn message(request: &impl prost::Message) -> Bytes {
    let encoded = request.encode_to_vec();
    let mut message = BytesMut::with_capacity(5 + encoded.len());
    message.put_u8(0);
    message.put_u32(encoded.len() as u32);
    message.put_slice(&encoded);
    message.freeze()
}

/// One unary call of `uri` (`http://host:port/service/method`) with `message` and
/// `grpc-timeout` set to `deadline`. Returns the headers that carry its status: the
/// trailers, or the response's headers when the node answered trailers-only (an error before
/// any message). The response's message itself is read and dropped.
pub async fn unary(
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    message: Bytes,
    deadline: Duration,
) -> Result<http::HeaderMap, h2::Error> {
    let request = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", format!("{}m", deadline.as_millis()))
        .body(())
        .expect("a valid request");
    let mut send = send.ready().await?;
    let (response, mut stream) = send.send_request(request, false)?;
    stream.send_data(message, true)?;
    let (parts, mut body) = response.await?.into_parts();
    if parts.headers.contains_key("grpc-status") {
        return Ok(parts.headers);
    }
    while let Some(chunk) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk?.len());
    }
    Ok(body.trailers().await?.unwrap_or_default())
}
