//! The `lease-fencing` invariant: no replica applies a write fenced by a lease token that is
//! not that lease's live token at that point of the log.
//!
//! It is checked on what every replica applies, independently of the machine's own lease
//! logic: from each applied command and its output, the checker keeps its own history of
//! every lease, in log order:
//!
//! - a **grant** (`AcquireLease` answered `granted`) makes the entry's index the live token
//!   (a grant's token is its index);
//! - a **renewal** (`KeepAliveLease` answered kept-alive) counts against the live token;
//! - an **expiry** (`ExpireLease` answered `expired`) or a **release** (`ReleaseLease`
//!   answered `released`) of the live token ends it: the lease then has no live token until
//!   the next grant.
//!
//! Then every newly recorded event (not a replay) whose submit carried a fence
//! `{ lease: L, token: T }` must find `T` live for `L`: not superseded by a newer grant, not
//! expired, not released, and granted at all. That is the zombie-writer guarantee: a client
//! paused past its TTL that writes with its old token is refused once the token is no
//! longer live, on every replica, every time.
//!
//! The same history also catches the lease operations that would break it indirectly: a
//! grant to a second holder while the first holder's token is live, a renewal, release or
//! expiry of a token that is not live, and an expiry that ignores a renewal applied after
//! its timer was armed.
//!
//! Each node's history restarts with the node (it replays its log from the start). A node
//! whose machine comes from a snapshot (installed from the leader, or restored at a restart)
//! takes the history of the point the snapshot was taken at: every snapshot is recorded with
//! the taking node's history, which must be at exactly the snapshot's index.

use std::collections::BTreeMap;

use quorate_payments::machine::{Applied, Command};
use quorate_raft_core::{Entry, EntryKind, Index, NodeId};

/// How a lease's last token ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Expired { at: Index },
    Released { at: Index },
}

/// One lease, as the applied history has it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseHistory {
    /// The latest grant's token (its index).
    token: u64,
    /// Its holder.
    holder: String,
    /// Renewals of that token so far.
    renewals: u64,
    /// `None` while the token is live.
    end: Option<End>,
}

impl LeaseHistory {
    fn is_live(&self, token: u64) -> bool {
        self.end.is_none() && self.token == token
    }

    /// Why `token` is not live, in words.
    fn why_not_live(&self, token: u64) -> String {
        if token < self.token {
            format!(
                "token {token} was superseded by the grant of token {} to {:?}",
                self.token, self.holder
            )
        } else if token > self.token {
            format!(
                "token {token} was never granted (latest token {})",
                self.token
            )
        } else {
            match self.end {
                Some(End::Expired { at }) => format!("token {token} expired at index {at}"),
                Some(End::Released { at }) => format!("token {token} was released at index {at}"),
                None => format!("token {token} is live"),
            }
        }
    }
}

/// The lease histories of every node. See the module documentation.
#[derive(Debug, Default)]
pub struct LeaseFencing {
    /// Per node, per lease name.
    nodes: BTreeMap<NodeId, BTreeMap<String, LeaseHistory>>,
    /// Per node, the last index it applied (its history is as of there).
    applied: BTreeMap<NodeId, Index>,
    /// The histories as of each index a snapshot was taken at.
    checkpoints: BTreeMap<Index, BTreeMap<String, LeaseHistory>>,
}

impl LeaseFencing {
    /// `node` restarted: it applies its log again from the start.
    pub fn on_restart(&mut self, node: NodeId) {
        self.nodes.remove(&node);
        self.applied.remove(&node);
    }

    /// `node` snapshotted its machine at `index`: its history must be as of `index`; it is
    /// kept for whoever restores that snapshot. Two snapshots of one index must agree.
    pub fn on_snapshot_taken(&mut self, node: NodeId, index: Index) -> Result<(), String> {
        let applied = self.applied.get(&node).copied().unwrap_or(0);
        if applied != index {
            return Err(format!(
                "node {node} took a snapshot of index {index} while it had applied up to \
                 {applied}"
            ));
        }
        let history = self.nodes.get(&node).cloned().unwrap_or_default();
        match self.checkpoints.get(&index) {
            Some(known) if *known != history => Err(format!(
                "node {node}'s lease history at index {index} differs from another \
                 snapshot's of the same index: {history:?} vs {known:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.checkpoints.insert(index, history);
                Ok(())
            }
        }
    }

    /// `node`'s machine was replaced by a snapshot of `index`: its history becomes the one
    /// recorded when that snapshot was taken.
    pub fn on_snapshot_restored(&mut self, node: NodeId, index: Index) -> Result<(), String> {
        let Some(history) = self.checkpoints.get(&index) else {
            return Err(format!(
                "node {node} restored a snapshot of index {index}, which no node took at an \
                 index it had applied"
            ));
        };
        self.nodes.insert(node, history.clone());
        self.applied.insert(node, index);
        Ok(())
    }

    /// `node` applied `entry` with `output`. An error explains the violation.
    pub fn on_apply(
        &mut self,
        node: NodeId,
        entry: &Entry,
        output: &Applied,
    ) -> Result<(), String> {
        self.applied.insert(node, entry.index);
        if entry.kind != EntryKind::Command {
            return Ok(());
        }
        // Undecodable commands change nothing (the machine answers Malformed).
        let Ok(command) = Command::decode(&entry.data) else {
            return Ok(());
        };
        let leases = self.nodes.entry(node).or_default();
        let index = entry.index;
        let fail = |what: String| Err(format!("node {node} applied index {index}: {what}"));
        match (command, output) {
            (Command::AcquireLease(c), Applied::LeaseAcquired(out)) if out.granted => {
                if let Some(lease) = leases.get(&c.name) {
                    if lease.end.is_none() && lease.holder != c.holder {
                        return fail(format!(
                            "lease {:?} was granted to {:?} while {:?} held token {} live",
                            c.name, c.holder, lease.holder, lease.token
                        ));
                    }
                }
                if out.token != index {
                    return fail(format!(
                        "lease {:?} was granted with token {}, not its index",
                        c.name, out.token
                    ));
                }
                let granted = LeaseHistory {
                    token: index,
                    holder: c.holder,
                    renewals: 0,
                    end: None,
                };
                leases.insert(c.name, granted);
            }
            (Command::KeepAliveLease(c), Applied::LeaseKeptAlive(_)) => {
                match leases.get_mut(&c.name) {
                    Some(lease) if lease.is_live(c.token) && lease.holder == c.holder => {
                        lease.renewals += 1;
                    }
                    Some(lease) => {
                        return fail(format!(
                            "lease {:?} was kept alive by {:?} with token {}, which is not its \
                             live grant: {}",
                            c.name,
                            c.holder,
                            c.token,
                            lease.why_not_live(c.token)
                        ))
                    }
                    None => {
                        return fail(format!(
                            "lease {:?} was kept alive but never granted",
                            c.name
                        ))
                    }
                }
            }
            (Command::ReleaseLease(c), Applied::LeaseReleased(out)) if out.released => {
                match leases.get_mut(&c.name) {
                    Some(lease) if lease.is_live(c.token) && lease.holder == c.holder => {
                        lease.end = Some(End::Released { at: index });
                    }
                    // A retried release of the token it already released.
                    Some(lease)
                        if lease.token == c.token
                            && lease.holder == c.holder
                            && matches!(lease.end, Some(End::Released { .. })) => {}
                    Some(lease) => {
                        return fail(format!(
                            "lease {:?} was released by {:?} with token {}, which is not its \
                             live grant: {}",
                            c.name,
                            c.holder,
                            c.token,
                            lease.why_not_live(c.token)
                        ))
                    }
                    None => {
                        return fail(format!("lease {:?} was released but never granted", c.name))
                    }
                }
            }
            (Command::ExpireLease(c), Applied::LeaseExpired(out)) if out.expired => {
                match leases.get_mut(&c.name) {
                    Some(lease) if lease.is_live(c.token) && lease.renewals == c.renewals => {
                        lease.end = Some(End::Expired { at: index });
                    }
                    Some(lease) if lease.is_live(c.token) => {
                        return fail(format!(
                            "lease {:?} token {} expired although it was renewed after the \
                             timer was armed (renewals {}, timer armed at {})",
                            c.name, c.token, lease.renewals, c.renewals
                        ))
                    }
                    Some(lease) => {
                        return fail(format!(
                            "lease {:?} token {} expired, but it was not live: {}",
                            c.name,
                            c.token,
                            lease.why_not_live(c.token)
                        ))
                    }
                    None => {
                        return fail(format!("lease {:?} expired but was never granted", c.name))
                    }
                }
            }
            (Command::Submit(s), Applied::EventRecorded(out)) if !out.replayed => {
                let Some(fence) = s.fence else {
                    return Ok(());
                };
                let why = match leases.get(&fence.lease) {
                    Some(lease) if lease.is_live(fence.token) => return Ok(()),
                    Some(lease) => lease.why_not_live(fence.token),
                    None => "the lease was never granted".to_owned(),
                };
                return fail(format!(
                    "recorded event {:?} of payment {:?} fenced by lease {:?} token {}, which \
                     is not the lease's live token: {why}",
                    s.idempotency_key, s.payment_id, fence.lease, fence.token
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_payments::machine::{
        AcquireLease, EventKind, EventRecord, EventRecorded, ExpireLease, KeepAliveLease,
        LeaseAcquired, LeaseExpired, LeaseFence, LeaseKeptAlive, LeaseReleased, ReleaseLease,
        Submit,
    };

    fn entry(index: Index, command: Command) -> Entry {
        Entry {
            index,
            term: 1,
            sequence: index,
            kind: EntryKind::Command,
            data: command.encode(),
        }
    }

    fn acquire(holder: &str) -> Command {
        Command::AcquireLease(AcquireLease {
            name: "w".into(),
            holder: holder.into(),
            ttl_ms: 1_000,
        })
    }

    fn granted(token: u64) -> Applied {
        Applied::LeaseAcquired(LeaseAcquired {
            granted: true,
            name: "w".into(),
            holder: String::new(),
            token,
            ttl_ms: 1_000,
        })
    }

    fn fenced_write(key: &str, token: u64) -> Command {
        Command::Submit(Submit {
            payment_id: "p".into(),
            idempotency_key: key.into(),
            kind: EventKind::Captured as i32,
            amount_minor: 1,
            currency: "USD".into(),
            fence: Some(LeaseFence {
                lease: "w".into(),
                token,
            }),
            ..Submit::default()
        })
    }

    fn recorded(replayed: bool) -> Applied {
        Applied::EventRecorded(EventRecorded {
            event: EventRecord::default(),
            replayed,
        })
    }

    fn expire(token: u64, renewals: u64) -> Command {
        Command::ExpireLease(ExpireLease {
            name: "w".into(),
            token,
            renewals,
        })
    }

    fn expired() -> Applied {
        Applied::LeaseExpired(LeaseExpired {
            expired: true,
            message: String::new(),
        })
    }

    fn keep_alive(holder: &str, token: u64) -> Command {
        Command::KeepAliveLease(KeepAliveLease {
            name: "w".into(),
            holder: holder.into(),
            token,
        })
    }

    fn kept_alive() -> Applied {
        Applied::LeaseKeptAlive(LeaseKeptAlive::default())
    }

    fn apply(check: &mut LeaseFencing, index: Index, command: Command, output: Applied) -> bool {
        check.on_apply(1, &entry(index, command), &output).is_ok()
    }

    #[test]
    fn a_write_fenced_by_the_live_token_passes() {
        let mut check = LeaseFencing::default();
        assert!(apply(&mut check, 3, acquire("a"), granted(3)));
        assert!(apply(&mut check, 4, keep_alive("a", 3), kept_alive()));
        assert!(apply(&mut check, 5, fenced_write("k1", 3), recorded(false)));
    }

    #[test]
    fn a_zombie_write_after_a_takeover_is_caught() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        assert!(apply(&mut check, 4, expire(3, 0), expired()));
        assert!(apply(&mut check, 5, acquire("b"), granted(5)));
        let err = check
            .on_apply(1, &entry(6, fenced_write("k1", 3)), &recorded(false))
            .unwrap_err();
        assert!(err.contains("superseded by the grant of token 5"), "{err}");
    }

    #[test]
    fn a_write_with_an_expired_or_released_token_is_caught() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        apply(&mut check, 4, expire(3, 0), expired());
        let err = check
            .on_apply(1, &entry(5, fenced_write("k1", 3)), &recorded(false))
            .unwrap_err();
        assert!(err.contains("token 3 expired at index 4"), "{err}");

        apply(&mut check, 6, acquire("b"), granted(6));
        let release = Command::ReleaseLease(ReleaseLease {
            name: "w".into(),
            holder: "b".into(),
            token: 6,
        });
        let released = Applied::LeaseReleased(LeaseReleased {
            released: true,
            message: String::new(),
        });
        assert!(apply(&mut check, 7, release.clone(), released.clone()));
        assert!(apply(&mut check, 8, release, released), "a retried release");
        let err = check
            .on_apply(1, &entry(9, fenced_write("k2", 6)), &recorded(false))
            .unwrap_err();
        assert!(err.contains("released at index 7"), "{err}");
    }

    #[test]
    fn replays_and_refusals_of_zombie_writes_are_not_violations() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        apply(&mut check, 4, acquire("a"), granted(4));
        assert!(apply(&mut check, 5, fenced_write("k1", 3), recorded(true)));
        let refused = Applied::SubmitRejected(Default::default());
        assert!(apply(&mut check, 6, fenced_write("k2", 3), refused));
    }

    #[test]
    fn a_grant_to_another_holder_while_a_token_is_live_is_caught() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        assert!(apply(&mut check, 4, acquire("a"), granted(4)), "re-grant");
        assert!(!apply(&mut check, 5, acquire("b"), granted(5)));
    }

    #[test]
    fn an_expiry_that_ignores_a_later_renewal_is_caught() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        apply(&mut check, 4, keep_alive("a", 3), kept_alive());
        let err = check
            .on_apply(1, &entry(5, expire(3, 0)), &expired())
            .unwrap_err();
        assert!(err.contains("renewed after the timer was armed"), "{err}");
    }

    #[test]
    fn a_renewal_of_a_superseded_token_is_caught() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        apply(&mut check, 4, acquire("a"), granted(4));
        assert!(!apply(&mut check, 5, keep_alive("a", 3), kept_alive()));
    }

    #[test]
    fn a_restarted_node_starts_its_history_again() {
        let mut check = LeaseFencing::default();
        apply(&mut check, 3, acquire("a"), granted(3));
        check.on_restart(1);
        let err = check
            .on_apply(1, &entry(4, fenced_write("k1", 3)), &recorded(false))
            .unwrap_err();
        assert!(err.contains("never granted"), "{err}");
        // Other nodes keep theirs.
        check
            .on_apply(2, &entry(3, acquire("a")), &granted(3))
            .unwrap();
        check
            .on_apply(2, &entry(4, fenced_write("k1", 3)), &recorded(false))
            .unwrap();
    }
}
