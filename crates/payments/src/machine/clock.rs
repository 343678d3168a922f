//! The machine clock: one time for every replica, moved only by the leader's stamps and only
//! within a bound.
//!
//! The clock decides when idempotency keys are forgotten, so a clock that runs ahead is a
//! safety problem: a client's retry of a capture whose answer it never saw would find its key
//! forgotten and record a second capture. A clock that lags only keeps keys longer. So:
//!
//! - Only the leader's stamp ([`LeaderClock`]) moves the clock; a node that merely received
//!   the request (and may have forwarded it) has no say. An unstamped command moves nothing.
//! - Within one leader term, the clock follows the leader's **monotonic** clock from where it
//!   stood when the term's first stamp was applied (`mono`); the leader's **wall** clock may
//!   place it anywhere in `[mono - MAX_WALL_CLOCK_LEAD_MS, mono + MAX_WALL_CLOCK_LEAD_MS]`,
//!   never further. A leader whose wall clock is a day fast therefore moves the clock at most
//!   [`MAX_WALL_CLOCK_LEAD_MS`] ahead of real time per term it leads; one that is a day slow
//!   leaves it running at the monotonic rate. A stamp outside that range is counted
//!   (`MetaRecord::leader_clock_corrections`) and reported, not trusted.
//! - The clock never goes backwards.
//! - The very first stamp a machine applies sets the clock to that leader's wall clock: there
//!   is nothing to compare it with. Only differences of the clock matter for any decision, so
//!   an origin that is off only shifts the timestamps of events.

use super::commands::LeaderClock;
use super::records::MetaRecord;

/// How far a leader's wall clock may move the machine clock beyond what its monotonic clock
/// measured, per term. It lets the clock regain the time an election took (a few election
/// timeouts) and follow NTP's corrections; it is the most a leader with a wrong wall clock can
/// push the clock ahead each time it is elected.
pub const MAX_WALL_CLOCK_LEAD_MS: u64 = 5_000;

#[cfg(feature = "bug-injection")]
thread_local! {
    static UNBOUNDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Injected bug (simulator only): apply trusts the stamp's wall clock without any bound, as
/// the machine did before this module (`clock = max(clock, wall)`). Set per thread, for the
/// run on it.
#[cfg(feature = "bug-injection")]
pub fn inject_unbounded_wall_clock(on: bool) {
    UNBOUNDED.with(|u| u.set(on));
}

/// Advances `meta`'s clock for a command of leader term `term` carrying `stamp`.
pub(crate) fn advance(meta: &mut MetaRecord, term: u64, stamp: Option<LeaderClock>) {
    let Some(stamp) = stamp else {
        return;
    };
    #[cfg(feature = "bug-injection")]
    if UNBOUNDED.with(std::cell::Cell::get) {
        meta.clock_ms = meta.clock_ms.max(stamp.wall_ms);
        return;
    }
    if meta.clock_ms == 0 {
        meta.clock_ms = stamp.wall_ms;
        anchor(meta, term, stamp);
        return;
    }
    if term != meta.clock_term {
        anchor(meta, term, stamp);
    }
    let mono = meta
        .clock_anchor_ms
        .saturating_add(stamp.term_ms.saturating_sub(meta.clock_anchor_term_ms));
    let earliest = mono.saturating_sub(MAX_WALL_CLOCK_LEAD_MS);
    let latest = mono.saturating_add(MAX_WALL_CLOCK_LEAD_MS);
    if !(earliest..=latest).contains(&stamp.wall_ms) {
        meta.leader_clock_corrections += 1;
    }
    meta.clock_ms = meta.clock_ms.max(stamp.wall_ms.clamp(earliest, latest));
}

/// A new term: its monotonic time starts where the clock stands.
fn anchor(meta: &mut MetaRecord, term: u64, stamp: LeaderClock) {
    meta.clock_term = term;
    meta.clock_anchor_ms = meta.clock_ms;
    meta.clock_anchor_term_ms = stamp.term_ms;
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const HOUR_MS: u64 = 3_600_000;

    fn at(wall_ms: u64, term_ms: u64) -> Option<LeaderClock> {
        Some(LeaderClock { wall_ms, term_ms })
    }

    fn started() -> MetaRecord {
        let mut meta = MetaRecord::default();
        advance(&mut meta, 1, at(T0, 0));
        meta
    }

    #[test]
    fn the_first_stamp_sets_the_clock() {
        let meta = started();
        assert_eq!(meta.clock_ms, T0);
        assert_eq!(meta.leader_clock_corrections, 0);
    }

    #[test]
    fn an_unstamped_command_moves_nothing() {
        let mut meta = started();
        let before = meta.clone();
        advance(&mut meta, 1, None);
        advance(&mut meta, 7, None);
        assert_eq!(meta, before);
    }

    #[test]
    fn a_leader_with_a_good_wall_clock_is_followed() {
        let mut meta = started();
        advance(&mut meta, 1, at(T0 + 1_000, 1_003));
        assert_eq!(meta.clock_ms, T0 + 1_000);
        // A new leader two seconds later (an election): its wall clock is within the bound.
        advance(&mut meta, 2, at(T0 + 3_000, 50));
        assert_eq!(meta.clock_ms, T0 + 3_000);
        advance(&mut meta, 2, at(T0 + 4_000, 1_050));
        assert_eq!(meta.clock_ms, T0 + 4_000);
        assert_eq!(meta.leader_clock_corrections, 0);
    }

    #[test]
    fn a_leader_a_day_fast_moves_the_clock_at_most_the_bound_per_term() {
        let mut meta = started();
        let day = 24 * HOUR_MS;
        // Term 2's leader is a day fast: the clock goes at most MAX_WALL_CLOCK_LEAD_MS ahead,
        // then follows its monotonic clock however many commands it proposes.
        for i in 0..10_000 {
            advance(&mut meta, 2, at(T0 + day + i, 100 + i));
        }
        assert_eq!(meta.clock_ms, T0 + MAX_WALL_CLOCK_LEAD_MS + 9_999);
        assert_eq!(meta.leader_clock_corrections, 10_000);
        // Re-elected in term 3, an hour later by its monotonic clock: one more bound at most.
        advance(&mut meta, 3, at(T0 + day + HOUR_MS, 0));
        advance(&mut meta, 3, at(T0 + day + 2 * HOUR_MS, HOUR_MS));
        assert_eq!(
            meta.clock_ms,
            T0 + 2 * MAX_WALL_CLOCK_LEAD_MS + 9_999 + HOUR_MS
        );
    }

    #[test]
    fn a_leader_a_day_slow_leaves_the_clock_running_at_its_monotonic_rate() {
        let mut meta = started();
        let day = 24 * HOUR_MS;
        advance(&mut meta, 2, at(T0 - day, 0));
        assert_eq!(meta.clock_ms, T0, "never backwards");
        advance(&mut meta, 2, at(T0 - day + HOUR_MS, HOUR_MS));
        assert_eq!(meta.clock_ms, T0 + HOUR_MS - MAX_WALL_CLOCK_LEAD_MS);
        assert_eq!(meta.leader_clock_corrections, 2);
    }

    #[test]
    fn the_clock_never_goes_backwards() {
        let mut meta = started();
        advance(&mut meta, 1, at(T0 + 4_000, 4_000));
        advance(&mut meta, 1, at(T0 + 1_000, 4_001));
        assert_eq!(meta.clock_ms, T0 + 4_000);
    }
}
