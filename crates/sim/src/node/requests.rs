//! Client requests on a simulated node: writes proposed (or forwarded to the leader) with
//! the leader's stamps, reads confirmed by ReadIndex or the lease, replies once applied.

use super::*;

impl SimNode {
    /// A read's answer: the payment's events, as the operations that submitted them; only
    /// the ones still held when the event log was compacted past its first ones.
    pub(super) fn read_payment(&self, payment: u64) -> Reply {
        let view = machine::payment_with_events(&self.machine, &names::payment_id(payment))
            .expect("a MemStore never fails a read");
        let Some(view) = view else {
            return Reply::Events(Vec::new());
        };
        let ops = view
            .events
            .iter()
            .map(|e| {
                names::op_of_key(&e.idempotency_key)
                    .expect("every simulated key names its operation")
            })
            .collect();
        if view.payment.events_compacted > 0 {
            Reply::CompactedEvents(ops)
        } else {
            Reply::Events(ops)
        }
    }

    pub(super) fn on_read_state(&mut self, read_state: ReadState, fx: &mut Effects) {
        let Some(read) = self.reads.get_mut(&read_state.read_id) else {
            return;
        };
        match read_state.index {
            Some(index) => read.index = Some(index),
            None => {
                let read = self.reads.remove(&read_state.read_id).expect("present");
                fx.responses.push(Response {
                    client: read.client,
                    op_id: read.op_id,
                    attempt: read.attempt,
                    reply: Reply::Refused,
                });
            }
        }
    }

    /// Answers reads whose index has been applied.
    pub(super) fn serve_reads(&mut self, fx: &mut Effects) {
        let applied = self.applied_index;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            let read = self.reads.remove(&id).expect("present");
            fx.responses.push(Response {
                client: read.client,
                op_id: read.op_id,
                attempt: read.attempt,
                reply: self.read_payment(read.payment),
            });
        }
    }

    pub(super) fn on_request(&mut self, request: Request, fx: &mut Effects) {
        // Refuse at once without a reachable leader with a quorum (the server's
        // `check_quorum_reachable`); a stale read needs none.
        let stale = matches!(
            request.action,
            Action::Read {
                kind: ReadKind::Stale,
                ..
            }
        );
        if !stale && self.contact().is_err() {
            fx.responses.push(request.respond(Reply::Refused));
            return;
        }
        match request.action {
            Action::Read { payment, kind } => self.on_read(&request, payment, kind, fx),
            _ => self.on_write(&request, fx),
        }
    }

    /// A write from a client: a follower that knows the leader forwards the command's bytes
    /// to it (as the server does); the leader, or a node that knows none, proposes it. The
    /// answer comes when it is applied.
    pub(super) fn on_write(&mut self, request: &Request, fx: &mut Effects) {
        let command = self.command(request);
        let bytes = if self.follower_clock_trusted {
            machine::stamp(&command.encode(), self.clocks()).expect("a valid command")
        } else {
            command.encode()
        };
        let Some(raw) = self.raw.as_ref() else { return };
        let soft = raw.soft_state();
        if soft.role != Role::Leader {
            if let Some(leader) = soft.leader_id.filter(|&l| l != self.id) {
                fx.forwards.push(Forward {
                    to: leader,
                    request: *request,
                    command: bytes,
                });
                return;
            }
        }
        self.propose_write(request, &command, bytes, fx);
    }

    /// A write another node forwarded: proposed here if this node leads, else the client is
    /// told whom to ask.
    pub(super) fn on_forwarded(&mut self, request: Request, bytes: Bytes, fx: &mut Effects) {
        let command = Command::decode(&bytes).expect("nodes forward valid commands");
        self.propose_write(&request, &command, bytes, fx);
    }

    /// The leader's stamp on bytes it is about to propose: its wall clock and its own ticks
    /// (its monotonic clock). Replaces whatever stamp a forwarded command carried, unless the
    /// `follower-clock-trusted` bug keeps it.
    pub(super) fn leader_stamp(&self, bytes: &Bytes) -> Bytes {
        let stamped_elsewhere = || matches!(machine::decode_stamped(bytes), Ok((_, Some(_))));
        if self.follower_clock_trusted && stamped_elsewhere() {
            return bytes.clone();
        }
        machine::stamp(bytes, self.clocks()).expect("nodes propose valid commands")
    }

    /// This node's clocks as a stamp: its wall clock, and its own ticks (its monotonic clock).
    pub(super) fn clocks(&self) -> LeaderClock {
        LeaderClock {
            wall_ms: self.wall_clock_ms,
            term_ms: self.expiry.now_ticks() * MS_PER_TICK,
        }
    }

    /// Proposes a write's bytes (stamped here if this node leads).
    pub(super) fn propose_write(
        &mut self,
        request: &Request,
        command: &Command,
        bytes: Bytes,
        fx: &mut Effects,
    ) {
        let must_be_refused = match command {
            Command::Submit(s) => self.zombie_must_be_refused(s.fence.as_ref()),
            _ => false,
        };
        let Some(raw) = self.raw.as_ref() else { return };
        let bytes = if raw.soft_state().role == Role::Leader {
            self.leader_stamp(&bytes)
        } else {
            bytes
        };
        let Some(raw) = self.raw.as_mut() else { return };
        let reply = match raw.propose(bytes) {
            Ok(p) => {
                self.proposals.insert(
                    p.index,
                    PendingProposal {
                        term: p.term,
                        client: request.client,
                        op_id: request.op_id,
                        attempt: request.attempt,
                        must_be_refused,
                    },
                );
                return;
            }
            Err(Error::NotLeader { leader_hint }) => Reply::Redirect(leader_hint),
            Err(_) => Reply::Refused,
        };
        fx.responses.push(request.respond(reply));
    }

    /// Serves a stale read at once; a linearizable one once its read index is applied.
    pub(super) fn on_read(
        &mut self,
        request: &Request,
        payment: u64,
        kind: ReadKind,
        fx: &mut Effects,
    ) {
        if kind == ReadKind::Stale {
            fx.responses
                .push(request.respond(self.read_payment(payment)));
            return;
        }
        let believes_lease = self.raw.as_ref().is_some_and(|r| r.has_valid_lease());
        if kind == ReadKind::Lease && believes_lease && !self.lease_holds_at(self.now) {
            // A lease read decided with time from before a pause: the lease this node
            // believes in has run out by its own clock.
            fx.violations.push((
                "lease-read-stale-clock",
                format!(
                    "node {} answers a lease read with its clock at tick {} while {} ticks \
                     have passed: its lease ran out meanwhile",
                    self.id,
                    self.raw.as_ref().map_or(0, |r| r.status().now_tick),
                    self.now.saturating_sub(self.started_at) / self.tick_period
                ),
            ));
        }
        let Some(raw) = self.raw.as_mut() else { return };
        let mode = if kind == ReadKind::Lease {
            ReadMode::Lease
        } else {
            ReadMode::Quorum
        };
        let read_id = self.next_read_id;
        self.next_read_id += 1;
        let reply = match raw.read_index(read_id, mode) {
            Ok(()) => {
                self.reads.insert(
                    read_id,
                    PendingRead {
                        client: request.client,
                        op_id: request.op_id,
                        attempt: request.attempt,
                        payment,
                        index: None,
                    },
                );
                return;
            }
            Err(Error::NotLeader { leader_hint }) => Reply::Redirect(leader_hint),
            Err(_) => Reply::Refused,
        };
        fx.responses.push(request.respond(reply));
    }

    /// The command a write request stands for, validated as the server validates it before
    /// proposing.
    pub(super) fn command(&self, request: &Request) -> Command {
        let command = match request.action {
            Action::Submit {
                payment,
                kind,
                amount,
                fence,
            } => Command::Submit(Submit {
                payment_id: names::payment_id(payment),
                idempotency_key: names::idempotency_key(request.op_id),
                kind: kind as i32,
                amount_minor: amount,
                currency: "USD".into(),
                metadata: BTreeMap::new(),
                fence: fence.map(|f| LeaseFence {
                    lease: names::lease_name(f.lease),
                    token: f.token,
                }),
                idempotency_window_ms: IDEMPOTENCY_WINDOW_MS,
                event_retention: self.event_retention,
            }),
            Action::Acquire { lease, ttl_ms } => Command::AcquireLease(AcquireLease {
                name: names::lease_name(lease),
                holder: names::holder(request.client),
                ttl_ms,
            }),
            Action::KeepAlive { lease, token } => Command::KeepAliveLease(KeepAliveLease {
                name: names::lease_name(lease),
                holder: names::holder(request.client),
                token,
            }),
            Action::Release { lease, token } => Command::ReleaseLease(ReleaseLease {
                name: names::lease_name(lease),
                holder: names::holder(request.client),
                token,
            }),
            Action::Read { .. } => unreachable!("reads are not commands"),
        };
        let valid = match &command {
            Command::Submit(c) => machine::validate_submit(c),
            Command::AcquireLease(c) => machine::validate_acquire(c),
            Command::KeepAliveLease(c) => machine::validate_keep_alive(c),
            Command::ReleaseLease(c) => machine::validate_release(c),
            Command::ExpireLease(_) => Ok(()),
        };
        if let Err(violation) = valid {
            panic!("the simulator built an invalid command {command:?}: {violation}");
        }
        command
    }
}
