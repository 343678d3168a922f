//! Appends to one peer over one long-lived `Raft.AppendStream` ([`CallStream`]): the answers
//! come back in the order the appends went.

use std::task::{Context, Poll};

use super::call_stream::CallStream;
use super::*;

/// One stream of appends to a peer, while it works. Dropping it cancels the call.
pub(super) struct AppendStream {
    call: CallStream<pb::AppendEntriesRequest, pb::AppendEntriesResponse>,
    /// When each append still unanswered was sent, oldest first (answers come in order).
    sent: VecDeque<Instant>,
    /// How long an append may wait for its answer: past it the stream is given up.
    rpc_timeout: Duration,
    /// Looks at the oldest unanswered append now and then (a timer per append would cost a
    /// timer-wheel entry each; this one ticks a few times per deadline, and only while
    /// appends are unanswered).
    check: tokio::time::Interval,
}

/// What a stream has to report.
pub(super) enum StreamEvent {
    /// The answer to the oldest unanswered append, sent at `started`.
    Reply {
        reply: pb::AppendEntriesResponse,
        started: Instant,
    },
    /// The stream is over (the peer refused an append, the connection broke, an answer was
    /// late): `unanswered` appends, the oldest sent at `started`, got no answer. Raft sends
    /// them again.
    Failed {
        status: tonic::Status,
        started: Instant,
        unanswered: usize,
    },
}

impl AppendStream {
    /// Calls `Raft.AppendStream` on `client`; up to `window` appends may be unanswered.
    pub(super) fn open(client: &RaftClient<Channel>, window: usize, rpc_timeout: Duration) -> Self {
        let mut client = client.clone();
        let call = CallStream::open(window, |requests| async move {
            client.append_stream(requests).await
        });
        let mut check = tokio::time::interval((rpc_timeout / 4).max(Duration::from_millis(1)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        AppendStream {
            call,
            sent: VecDeque::new(),
            rpc_timeout,
            check,
        }
    }

    /// Appends sent and not answered yet.
    pub(super) fn unanswered(&self) -> usize {
        self.sent.len()
    }

    /// Sends `request`. False when the stream cannot take it (it ended): the caller drops the
    /// stream and opens another. (It always has room: no more than `window` are unanswered.)
    pub(super) fn send(&mut self, request: pb::AppendEntriesRequest) -> bool {
        if !self.call.send(request) {
            return false;
        }
        self.sent.push_back(Instant::now());
        true
    }

    /// The next answer or the end of the stream. After `Failed`, drop the stream.
    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<StreamEvent> {
        match self.call.poll_answer(cx) {
            Poll::Ready(Ok(reply)) => {
                let Some(started) = self.sent.pop_front() else {
                    return Poll::Ready(self.failed(tonic::Status::internal(
                        "the peer answered an append that was never sent",
                    )));
                };
                return Poll::Ready(StreamEvent::Reply { reply, started });
            }
            Poll::Ready(Err(status)) => return Poll::Ready(self.failed(status)),
            Poll::Pending => {}
        }
        while !self.sent.is_empty() && self.check.poll_tick(cx).is_ready() {
            if self
                .sent
                .front()
                .is_some_and(|s| s.elapsed() >= self.rpc_timeout)
            {
                return Poll::Ready(self.failed(tonic::Status::deadline_exceeded(format!(
                    "an append on the stream had no answer within the RPC deadline ({} ms)",
                    self.rpc_timeout.as_millis()
                ))));
            }
        }
        Poll::Pending
    }

    fn failed(&self, status: tonic::Status) -> StreamEvent {
        StreamEvent::Failed {
            status,
            started: self.sent.front().copied().unwrap_or_else(Instant::now),
            unanswered: self.sent.len(),
        }
    }
}
