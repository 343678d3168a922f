//! A snapshot's machine image, as a follower receives it from its leader: restoring it into a
//! store returns an error or a machine, never panics, and the machine's reads never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_payments::machine::{image_applied_index, list_events, machine_status, restore_image, MemStore};

fuzz_target!(|data: &[u8]| {
    let _ = image_applied_index(data);
    let mut store = MemStore::new();
    if restore_image(&mut store, data).is_ok() {
        let _ = machine_status(&store);
        let _ = list_events(&store, 0, 100);
    }
});
