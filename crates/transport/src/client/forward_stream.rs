//! Forwarded writes to the leader over one long-lived `Raft.ForwardStream`
//! ([`CallStream`]): batches as messages, each answered under its id.

use super::call_stream::CallStream;
use super::*;

/// How often the batches in flight are checked against their deadlines.
const DEADLINE_CHECK: Duration = Duration::from_millis(10);

/// A batch sent on the stream and not answered yet.
struct InFlight {
    jobs: Vec<ForwardJob>,
    started: Instant,
    /// Its jobs' latest deadline: past it, the batch is failed (a late answer is ignored).
    until: Instant,
}

/// Sends the jobs of `queue` to `peer` in batches on its `ForwardStream` (at most
/// [`FORWARD_BATCHES_IN_FLIGHT`] in flight: commands that arrive meanwhile leave together),
/// opening a new stream whenever the last one ended. Returns when the queue closes (`None`),
/// or when the leader answers UNIMPLEMENTED (a version without the stream): with the batches
/// it never took, for the caller to send as `ForwardBatch` calls.
pub(super) async fn forward_on_stream(
    client: &RaftClient<Channel>,
    queue: &mut mpsc::Receiver<ForwardJob>,
    config: &TransportConfig,
    stats: &StatsTable,
    peer: NodeId,
) -> Option<Vec<Vec<ForwardJob>>> {
    let mut stream: Option<CallStream<pb::ForwardBatchRequest, pb::ForwardBatchResponse>> = None;
    let mut in_flight: BTreeMap<u64, InFlight> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut check = tokio::time::interval(DEADLINE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            first = queue.recv(), if in_flight.len() < FORWARD_BATCHES_IN_FLIGHT => {
                let first = first?;
                let jobs = gather_batch(first, queue, config);
                next_id += 1;
                let request = batch_request(&jobs, config, peer, next_id);
                let started = Instant::now();
                let until = started + jobs.iter().map(|j| j.deadline).max().unwrap_or_default();
                let s = stream.get_or_insert_with(|| {
                    let mut client = client.clone();
                    CallStream::open(FORWARD_BATCHES_IN_FLIGHT, |requests| async move {
                        client.forward_stream(requests).await
                    })
                });
                // (A stream that ended takes nothing: its end comes with its next poll, and
                // fails this batch with the rest.)
                s.send(request);
                in_flight.insert(next_id, InFlight { jobs, started, until });
            }
            answer = std::future::poll_fn(|cx| match stream.as_mut() {
                Some(s) => s.poll_answer(cx),
                None => std::task::Poll::Pending,
            }), if stream.is_some() => match answer {
                Ok(reply) => {
                    // (None: failed at its deadline already.)
                    if let Some(batch) = in_flight.remove(&reply.id) {
                        answer_batch(batch.jobs, reply, stats, peer, batch.started);
                    }
                }
                Err(status) => {
                    stream = None;
                    let batches = std::mem::take(&mut in_flight);
                    if status.code() == tonic::Code::Unimplemented {
                        return Some(batches.into_values().map(|b| b.jobs).collect());
                    }
                    let started = batches.values().map(|b| b.started).min();
                    record_refusal(stats, peer, started.unwrap_or_else(Instant::now), &status);
                    for batch in batches.into_values() {
                        fail_all(batch.jobs, &status);
                    }
                }
            },
            _ = check.tick(), if !in_flight.is_empty() => {
                let now = Instant::now();
                let late: Vec<u64> = in_flight
                    .iter()
                    .filter(|(_, b)| b.until <= now)
                    .map(|(&id, _)| id)
                    .collect();
                for id in late {
                    let Some(batch) = in_flight.remove(&id) else { continue };
                    let status = deadline_missed(peer, batch.until - batch.started);
                    stats.sent_failed(peer, status.message().to_string());
                    fail_all(batch.jobs, &status);
                }
            }
        }
    }
}
