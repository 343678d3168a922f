//! Simulated time: microticks, nominal ticks and milliseconds.
//!
//! The event loop counts microticks; a node's tick lasts about [`TICK`] of them, each node's
//! clock running at its own rate. The payments machine and the leader's lease timers count
//! milliseconds: a nominal tick is [`MS_PER_TICK`] of them, as in the server (whose tick is
//! half of its 100 ms heartbeat interval), so lease TTLs of a second or two span a few dozen
//! ticks, a few election timeouts.

/// Microticks per nominal tick.
pub const TICK: u64 = 1000;

/// Milliseconds per nominal tick.
pub const MS_PER_TICK: u64 = 50;

/// The wall clock (milliseconds since the Unix epoch) at simulated time 0.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// Microticks in `ms` milliseconds.
pub fn ms_to_microticks(ms: u64) -> u64 {
    ms * TICK / MS_PER_TICK
}

/// Whole milliseconds in `microticks`.
pub fn microticks_to_ms(microticks: u64) -> u64 {
    microticks * MS_PER_TICK / TICK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_is_fifty_milliseconds_both_ways() {
        assert_eq!(ms_to_microticks(MS_PER_TICK), TICK);
        assert_eq!(microticks_to_ms(TICK), MS_PER_TICK);
        assert_eq!(ms_to_microticks(1_000), 20 * TICK);
        assert_eq!(microticks_to_ms(19), 0, "partial milliseconds round down");
    }
}
