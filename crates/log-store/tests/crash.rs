//! Crash safety under SIGKILL: a child process persists a deterministic workload and is
//! killed at random moments, many times, on the same growing store. After each kill the
//! store must reopen, hold no holes, and equal the workload's state after the last step the
//! child acknowledged, or after the one it was writing (a write is atomic: the step in
//! flight may or may not have landed, but never half of it).
//!
//! The child is this test binary re-executed (`crash_child`, ignored unless the
//! `QUORATE_CRASH_CHILD` variable names a store). It prints `QUORATE-CRASH synced <step>`
//! after each synced persist returns; a step it printed was durable. Both sides derive the
//! workload from the seed, the cycle number and the store's state at the start of the cycle,
//! so the parent can recompute exactly what the child wrote.
//!
//! Knobs: `QUORATE_CRASH_SEED` (replays a run's workload and kill delays; the kill moments
//! still depend on timing) and `QUORATE_CRASH_CYCLES` (default 70).

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quorate_log_store::{LogStore, OpenOptions};
use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::{
    ConfState, Entry, EntryKind, HardState, Index, LogWriter, MemStorage, Storage, Term,
};
use tempfile::TempDir;

const CHILD_STORE_VAR: &str = "QUORATE_CRASH_CHILD";
const CHILD_WORKLOAD_VAR: &str = "QUORATE_CRASH_WORKLOAD";
const SEED_VAR: &str = "QUORATE_CRASH_SEED";
const CYCLES_VAR: &str = "QUORATE_CRASH_CYCLES";
const DEFAULT_CYCLES: u64 = 70;
/// Marks the child's protocol lines among libtest's own output.
const LINE_MARK: &str = "QUORATE-CRASH ";
/// A child that is never killed stops after this many steps.
const MAX_CHILD_STEPS: u64 = 20_000;

fn conf() -> ConfState {
    ConfState::with_voters([1, 2, 3])
}

fn options() -> OpenOptions {
    OpenOptions::new(conf(), &[])
}

/// One `persist` call of the workload.
struct Step {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
}

/// What the workload's next step depends on: the end of the log and the hard state.
struct Tip {
    hard_state: HardState,
    last_index: Index,
    last_term: Term,
}

fn tip_of(store: &impl Storage) -> Tip {
    let last_index = store.last_index();
    Tip {
        hard_state: store.initial_state().unwrap().hard_state,
        last_index,
        last_term: store.term(last_index).unwrap(),
    }
}

/// The workload's generator for `cycle` of a run with `seed`.
fn workload_rng(seed: u64, cycle: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ cycle.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn random_entry(rng: &mut SplitMix64, index: Index, term: Term) -> Entry {
    if rng.chance(1, 20) {
        return Entry {
            index,
            term,
            sequence: 1,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        };
    }
    let len = rng.range(0, 120) as usize;
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    Entry {
        index,
        term,
        sequence: rng.range(1, 1 << 40),
        kind: EntryKind::Command,
        data: Bytes::from(data),
    }
}

/// The next step: mostly appends of 1..=50 entries (sometimes advancing the commit index),
/// sometimes a rewrite of the last few uncommitted entries by a new leader's term (suffix
/// truncation), sometimes a hard state change alone.
fn next_write(rng: &mut SplitMix64, tip: &Tip) -> Step {
    let hs = tip.hard_state;
    let term = hs.term.max(tip.last_term).max(1);
    let roll = rng.range(0, 100);
    let uncommitted = tip.last_index - hs.commit;
    if (75..88).contains(&roll) && uncommitted > 0 {
        let replaced = rng.range(1, 6).min(uncommitted);
        let start = tip.last_index - replaced + 1;
        let new_term = term + 1;
        let count = rng.range(1, replaced + 4);
        let entries = (start..start + count)
            .map(|index| random_entry(rng, index, new_term))
            .collect();
        let hard_state = HardState {
            term: new_term,
            vote: Some(rng.range(1, 4)),
            commit: hs.commit,
            rejoining: None,
        };
        return Step {
            hard_state: Some(hard_state),
            entries,
        };
    }
    if roll >= 88 {
        let hard_state = if rng.chance(1, 2) {
            HardState {
                term: term + 1,
                vote: Some(rng.range(1, 4)),
                commit: hs.commit,
                rejoining: None,
            }
        } else {
            HardState {
                commit: rng.range(hs.commit, tip.last_index + 1),
                ..hs
            }
        };
        return Step {
            hard_state: Some(hard_state),
            entries: Vec::new(),
        };
    }
    let count = rng.range(1, 51);
    let first = tip.last_index + 1;
    let entries: Vec<Entry> = (first..first + count)
        .map(|index| random_entry(rng, index, term))
        .collect();
    let mut hard_state = HardState { term, ..hs };
    if rng.chance(1, 3) {
        hard_state.commit = rng.range(hs.commit, first + count);
    }
    Step {
        hard_state: (hard_state != hs).then_some(hard_state),
        entries,
    }
}

fn apply(model: &mut MemStorage, write: &Step) {
    model
        .persist(write.hard_state.as_ref(), &write.entries, true)
        .expect("the workload only generates valid writes");
}

/// The child: continue the workload on the store until killed.
#[test]
#[ignore = "the child process of synced_entries_survive_sigkill_at_random_moments"]
fn crash_child() {
    let Ok(directory) = env::var(CHILD_STORE_VAR) else {
        return;
    };
    let workload = env::var(CHILD_WORKLOAD_VAR).expect("the parent names the workload");
    let (seed, cycle) = workload.split_once(':').expect("seed:cycle");
    let mut rng = workload_rng(seed.parse().unwrap(), cycle.parse().unwrap());

    let mut store = LogStore::open(Path::new(&directory), options()).expect("reopen the store");
    let mut tip = tip_of(&store);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{LINE_MARK}opened {}", tip.last_index).unwrap();
    stdout.flush().unwrap();
    for step in 1..=MAX_CHILD_STEPS {
        let write = next_write(&mut rng, &tip);
        store
            .persist(write.hard_state.as_ref(), &write.entries, true)
            .expect("persist");
        if let Some(hard_state) = write.hard_state {
            tip.hard_state = hard_state;
        }
        if let Some(last) = write.entries.last() {
            tip.last_index = last.index;
            tip.last_term = last.term;
        }
        writeln!(stdout, "{LINE_MARK}synced {step}").unwrap();
        stdout.flush().unwrap();
    }
}

/// What the parent learns from one child.
enum ChildLine {
    Opened,
    Synced(u64),
}

/// Reads the child's protocol lines into `lines` until its stdout closes.
fn forward_lines(stdout: impl Read, lines: mpsc::Sender<ChildLine>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(position) = line.find(LINE_MARK) else {
            continue;
        };
        let message = &line[position + LINE_MARK.len()..];
        let parsed = if message.starts_with("opened") {
            ChildLine::Opened
        } else if let Some(step) = message.strip_prefix("synced ") {
            ChildLine::Synced(step.trim().parse().expect("a step number"))
        } else {
            continue;
        };
        if lines.send(parsed).is_err() {
            break;
        }
    }
}

/// Everything the store holds, for comparison with the model.
fn contents(store: &impl Storage) -> (HardState, Vec<Entry>) {
    let entries = store
        .entries(store.first_index(), store.last_index() + 1, None)
        .expect("read the whole log");
    (store.initial_state().unwrap().hard_state, entries)
}

fn describe_difference(actual: &[Entry], expected: &[Entry]) -> String {
    let first_difference = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    format!(
        "{} entries stored, {} expected; first difference at position {first_difference}: \
         stored {:?}, expected {:?}",
        actual.len(),
        expected.len(),
        actual.get(first_difference),
        expected.get(first_difference)
    )
}

#[test]
fn synced_entries_survive_sigkill_at_random_moments() {
    let seed = env::var(SEED_VAR)
        .ok()
        .map(|seed| seed.parse().expect("QUORATE_CRASH_SEED is a u64"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cycles = env::var(CYCLES_VAR)
        .ok()
        .map(|cycles| cycles.parse().expect("QUORATE_CRASH_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    println!(
        "crash test seed {seed}; replay the workload with \
         {SEED_VAR}={seed} cargo test --release --workspace --test crash"
    );

    let directory = TempDir::new().unwrap();
    drop(LogStore::open(directory.path(), options()).unwrap());
    let mut model = MemStorage::new(conf());
    let mut kill_rng = SplitMix64::new(seed).fork();
    let started = Instant::now();
    let (mut in_flight_landed, mut entries_verified, mut steps_acknowledged) = (0u64, 0u64, 0u64);

    for cycle in 0..cycles {
        let mut child = Command::new(env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--ignored"])
            .env(CHILD_STORE_VAR, directory.path())
            .env(CHILD_WORKLOAD_VAR, format!("{seed}:{cycle}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the child");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || forward_lines(stdout, sender));
        let mut stderr = child.stderr.take().unwrap();
        let errors = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });

        // Mostly kill while the child writes; sometimes while it is still opening (and
        // recovering) the store.
        let mut acknowledged = 0u64;
        if kill_rng.chance(1, 10) {
            thread::sleep(Duration::from_millis(kill_rng.range(0, 40)));
        } else {
            let opened = loop {
                match lines.recv_timeout(Duration::from_secs(60)) {
                    Ok(ChildLine::Opened) => break true,
                    Ok(ChildLine::Synced(step)) => acknowledged = acknowledged.max(step),
                    Err(_) => break false,
                }
            };
            if opened {
                thread::sleep(Duration::from_micros(kill_rng.range(0, 150_000)));
            }
        }
        child.kill().expect("kill the child");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        for line in lines.try_iter() {
            if let ChildLine::Synced(step) = line {
                acknowledged = acknowledged.max(step);
            }
        }
        let child_errors = errors.join().unwrap();
        assert!(
            status.code().is_none() || status.success(),
            "cycle {cycle}: the child failed on its own ({status}):\n{child_errors}"
        );

        // The states after the acknowledged step and after the one in flight.
        let mut rng = workload_rng(seed, cycle);
        let mut after_acknowledged = model;
        for _ in 0..acknowledged {
            let step = next_write(&mut rng, &tip_of(&after_acknowledged));
            apply(&mut after_acknowledged, &step);
        }
        let mut after_in_flight = after_acknowledged.clone();
        let step = next_write(&mut rng, &tip_of(&after_in_flight));
        apply(&mut after_in_flight, &step);

        let store = LogStore::open(directory.path(), options()).unwrap_or_else(|error| {
            panic!("cycle {cycle}: the store does not reopen after a kill: {error}")
        });
        assert_eq!(
            store.initial_state().unwrap().conf_state,
            conf(),
            "cycle {cycle}"
        );
        let (hard_state, entries) = contents(&store);
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, position as u64 + 1, "cycle {cycle}: a hole");
        }
        drop(store);

        let holds = |state: &MemStorage| {
            hard_state == state.hard_state() && entries.as_slice() == state.all_entries()
        };
        if holds(&after_in_flight) {
            in_flight_landed += 1;
            model = after_in_flight;
        } else {
            assert!(
                holds(&after_acknowledged),
                "cycle {cycle} (seed {seed}): after step {acknowledged} was acknowledged the \
                 store holds neither that step's state nor the next one's.\n\
                 hard state: stored {hard_state:?}, after step {acknowledged} {:?}, after the \
                 next {:?}\nlog vs step {acknowledged}: {}\nlog vs the next: {}",
                after_acknowledged.hard_state(),
                after_in_flight.hard_state(),
                describe_difference(&entries, after_acknowledged.all_entries()),
                describe_difference(&entries, after_in_flight.all_entries()),
            );
            model = after_acknowledged;
        }
        entries_verified += entries.len() as u64;
        steps_acknowledged += acknowledged;
    }

    println!(
        "crash test: {cycles} kill/reopen cycles in {:.1?}, {steps_acknowledged} synced steps \
         acknowledged, {in_flight_landed} in-flight writes found landed, \
         {entries_verified} entries verified in total, final log of {} entries (seed {seed})",
        started.elapsed(),
        model.last_index()
    );
}
