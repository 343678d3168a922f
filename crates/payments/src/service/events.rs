//! `quorate.payments.v1.PaymentEvents`.

use std::pin::Pin;

use quorate_proto::payments as pb;
use quorate_proto::payments::payment_events_server::PaymentEvents;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::{event_to_proto, payment_to_proto, submit_command};
use super::{status, PaymentsService};
use crate::machine::{self, Applied, RejectReason};

/// A stream of events for `Watch`.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::PaymentEvent, Status>> + Send>>;

fn check_id(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.chars().count() > 255 || value.chars().any(char::is_control) {
        return Err(status::invalid(
            field,
            "must be 1 to 255 characters without control characters",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl PaymentEvents for PaymentsService {
    #[tracing::instrument(
        name = "PaymentEvents.Submit",
        skip_all,
        fields(payment.id, payment.kind, raft.index, raft.term, fencing.token)
    )]
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("payment.id", request.payment_id.as_str())
            .record("payment.kind", request.kind);
        let config = self.config();
        let window = config.idempotency_window.as_millis() as u64;
        let submit = submit_command(request, window, config.event_retention);
        // Validate before proposing: bad input never reaches the log.
        machine::validate_submit(&submit).map_err(|v| status::invalid_field(&v))?;
        match self.propose(machine::Command::Submit(submit)).await? {
            Applied::EventRecorded(recorded) => {
                let token = &recorded.event.token;
                span.record("raft.index", recorded.event.index)
                    .record("raft.term", token.term)
                    .record(
                        "fencing.token",
                        format!("{}.{}", token.term, token.sequence),
                    );
                Ok(Response::new(pb::SubmitResponse {
                    event: Some(event_to_proto(recorded.event)),
                    replayed: recorded.replayed,
                }))
            }
            Applied::SubmitRejected(r) => {
                let reason =
                    RejectReason::try_from(r.reason).unwrap_or(RejectReason::InvalidTransition);
                Err(status::rejected(reason, &r.message, r.replayed))
            }
            Applied::Malformed(m) => Err(status::invalid("request", &m.message)),
            other => Err(status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    #[tracing::instrument(name = "PaymentEvents.Get", skip_all, fields(payment.id))]
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("payment.id", request.payment_id.as_str());
        check_id("payment_id", &request.payment_id)?;
        let stale = self.confirm_read(request.consistency).await?;
        let state = self.state();
        let applied_index = machine::machine_status(&state)
            .map_err(|e| status::internal(e.to_string()))?
            .applied_index;
        let view = machine::payment_with_events(&state, &request.payment_id)
            .map_err(status::read_failed)?
            .ok_or_else(|| {
                status::not_found(format!(
                    "payment {:?} not found (as of applied index {applied_index})",
                    request.payment_id
                ))
            })?;
        Ok(Response::new(pb::GetResponse {
            payment: Some(payment_to_proto(view.payment, view.events)),
            applied_index,
            stale,
        }))
    }

    #[tracing::instrument(name = "PaymentEvents.List", skip_all)]
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let request = request.into_inner();
        let stale = self.confirm_read(request.consistency).await?;
        let state = self.state();
        let applied_index = machine::machine_status(&state)
            .map_err(|e| status::internal(e.to_string()))?
            .applied_index;
        let page = machine::list_events(&state, request.after_index, request.limit)
            .map_err(status::read_failed)?;
        Ok(Response::new(pb::ListResponse {
            events: page.events.into_iter().map(event_to_proto).collect(),
            next_after_index: page.next_after_index,
            applied_index,
            stale,
        }))
    }

    type WatchStream = EventStream;

    #[tracing::instrument(name = "PaymentEvents.Watch", skip_all)]
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let mut after = request.after_index;
        self.confirm_read(request.consistency).await?;
        let service = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut applied = service.node().subscribe_applied();
            let mut stop = service.stop_signal();
            loop {
                let page =
                    match machine::list_events(&service.state(), after, machine::MAX_LIST_LIMIT) {
                        Ok(page) => page,
                        // (A watcher that fell behind the event log's compaction ends with
                        // COMPACTED, never with a silent gap.)
                        Err(e) => {
                            let _ = tx.send(Err(status::read_failed(e))).await;
                            return;
                        }
                    };
                let caught_up = page.events.len() < machine::MAX_LIST_LIMIT as usize;
                for event in page.events {
                    after = event.index;
                    if tx.send(Ok(event_to_proto(event))).await.is_err() {
                        return; // the client went away
                    }
                }
                if caught_up {
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = stop.wait_for(|&s| s) => return,
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
