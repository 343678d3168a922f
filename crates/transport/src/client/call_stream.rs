//! One long-lived bidirectional call to a peer: requests go as messages on an open HTTP/2
//! stream, not as calls of their own (no headers, no new stream, no trailers, no hop through
//! the channel's buffer task), and answers come back on the same stream.

use std::task::{Context, Poll};

use futures_util::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::*;

type Opening<Resp> = Pin<
    Box<
        dyn Future<Output = std::result::Result<tonic::Response<Streaming<Resp>>, tonic::Status>>
            + Send,
    >,
>;

enum State<Resp> {
    /// The call is made; the peer's response headers have not come yet (the requests sent
    /// meanwhile already travel).
    Opening(Opening<Resp>),
    Open(Box<Streaming<Resp>>),
}

/// A bidirectional call while it works. Dropping it cancels the call.
pub(super) struct CallStream<Req, Resp> {
    requests: mpsc::Sender<Req>,
    state: State<Resp>,
}

impl<Req: Send + 'static, Resp> CallStream<Req, Resp> {
    /// Makes the call with `call`, which gets the stream of requests; up to `capacity`
    /// requests may wait to leave.
    pub(super) fn open<F, Fut>(capacity: usize, call: F) -> Self
    where
        F: FnOnce(ReceiverStream<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Streaming<Resp>>, tonic::Status>>
            + Send
            + 'static,
    {
        let (requests, outgoing) = mpsc::channel(capacity.max(1));
        CallStream {
            requests,
            state: State::Opening(Box::pin(call(ReceiverStream::new(outgoing)))),
        }
    }

    /// Sends `request`. False when the call cannot take it (it ended, or `capacity` requests
    /// wait to leave): the caller drops the stream.
    pub(super) fn send(&self, request: Req) -> bool {
        self.requests.try_send(request).is_ok()
    }

    /// The next answer, or why the call is over (after which the caller drops it).
    pub(super) fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::result::Result<Resp, tonic::Status>> {
        loop {
            match &mut self.state {
                State::Opening(opening) => match opening.as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        self.state = State::Open(Box::new(response.into_inner()))
                    }
                    Poll::Ready(Err(status)) => return Poll::Ready(Err(status)),
                    Poll::Pending => return Poll::Pending,
                },
                State::Open(answers) => {
                    return match Pin::new(answers.as_mut()).poll_next(cx) {
                        Poll::Ready(Some(answer)) => Poll::Ready(answer),
                        Poll::Ready(None) => Poll::Ready(Err(tonic::Status::unavailable(
                            "the peer ended the stream",
                        ))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}
