//! How the simulator's numbers become the payments machine's strings, and back.
//!
//! Clients and the checkers count in numbers (payment `3`, lease `0`, operation
//! `2_000_017`); the machine stores strings. An event's idempotency key is derived from the
//! number of the logical operation that submitted it, which is unique across the run and
//! shared by all of the operation's retries, so a read's events map back to the operations
//! (the linearizability checker's values) without any table.

/// The machine's payment id for payment `n`.
pub fn payment_id(n: u64) -> String {
    format!("pay-{n}")
}

/// The machine's lease name for lease `n`.
pub fn lease_name(n: u64) -> String {
    format!("lease-{n}")
}

/// The holder name client `client` uses for leases.
pub fn holder(client: u64) -> String {
    format!("client-{client}")
}

/// The idempotency key of logical operation `op_id` (every retry uses the same).
pub fn idempotency_key(op_id: u64) -> String {
    format!("op-{op_id}")
}

/// The operation an idempotency key was derived from, if it was.
pub fn op_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("op-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_maps_back_to_its_operation() {
        assert_eq!(op_of_key(&idempotency_key(2_000_017)), Some(2_000_017));
        assert_eq!(op_of_key("op-x"), None);
        assert_eq!(op_of_key("pay-3"), None);
    }

    #[test]
    fn payments_leases_and_holders_have_distinct_names() {
        assert_eq!(payment_id(3), "pay-3");
        assert_eq!(lease_name(0), "lease-0");
        assert_eq!(holder(7), "client-7");
    }
}
