//! Explaining a violation: which operations of the key could not be ordered, and why, in
//! terms an engineer can check against the history.

use super::*;

/// Why operation `stuck` could not take effect after a prefix made of the operations in
/// `done`, which left the list at `master[..len]`.
pub(super) fn dead_end_hint(
    ops: &[&Operation],
    roles: &[Role<'_>],
    master: &[u64],
    done: &HashSet<usize>,
    len: usize,
    stuck: usize,
) -> String {
    let mut hint = match roles[stuck] {
        Role::Append(value) => match master.iter().position(|&v| v == value) {
            Some(position) => format!(
                "reads place {value} at position {position} of the list, which then had {len} \
                 values"
            ),
            None => format!(
                "no read returned {value}, so it could only take effect after every remaining \
                 read"
            ),
        },
        Role::Read(values) => format!(
            "it returned a list of {} values, but the list then had {len}",
            values.len()
        ),
        Role::Ignored(_) => String::new(),
    };
    let Some(&next) = master.get(len) else {
        return hint;
    };
    // Why the list could not grow: reads still expecting its current length, or the append of
    // the next value not called yet.
    let remaining = |i: usize| !done.contains(&i) && i != stuck;
    let waiting: Vec<String> = (0..ops.len())
        .filter(|&i| remaining(i) && matches!(roles[i], Role::Read(v) if v.len() == len))
        .map(|i| format!("#{i} (called at t={})", ops[i].call))
        .collect();
    let appender = (0..ops.len())
        .find(|&i| !done.contains(&i) && matches!(roles[i], Role::Append(v) if v == next));
    let _ = write!(hint, "; the next value of the list is {next}");
    if let Some(appender) = appender {
        let _ = write!(
            hint,
            " (appended by #{appender}, called at t={})",
            ops[appender].call
        );
    }
    if waiting.is_empty() {
        if appender.is_some() && appender != Some(stuck) {
            let _ = write!(hint, ", which was called too late");
        }
    } else {
        let _ = write!(
            hint,
            ", which could only be added after the reads that returned the {len}-value list, \
             still pending: {}",
            waiting.join(", ")
        );
    }
    hint
}

/// Formats a list, abbreviating long ones.
pub(super) fn fmt_list(values: &[u64]) -> String {
    const HEAD_SHOWN: usize = 4;
    const TAIL_SHOWN: usize = 8;
    let join = |values: &[u64]| {
        values
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if values.len() <= HEAD_SHOWN + TAIL_SHOWN + 4 {
        format!("[{}]", join(values))
    } else {
        format!(
            "[{}, ... {} values in all ..., {}]",
            join(&values[..HEAD_SHOWN]),
            values.len(),
            join(&values[values.len() - TAIL_SHOWN..])
        )
    }
}

pub(super) fn fmt_kind(op: &Operation) -> String {
    match op.kind {
        OpKind::Append { value } => format!("Append({value})"),
        OpKind::Read => "Read".to_string(),
    }
}

pub(super) fn fmt_op(i: usize, op: &Operation) -> String {
    let ret = match op.ret {
        Some(ret) => ret.to_string(),
        None => "?".to_string(),
    };
    let observed = match &op.observed {
        Observed::Appended => "ok".to_string(),
        Observed::ReadValues(values) => fmt_list(values),
        Observed::Unknown => "unknown (timed out)".to_string(),
    };
    format!(
        "#{i} client {} {} call={} ret={ret} -> {observed}",
        op.client,
        fmt_kind(op),
        op.call
    )
}

/// Builds the explanation of a violation on `key`.
pub(super) fn explain(key: u64, ops: &[&Operation], violation: &Violation) -> String {
    let mut out = format!("key {key}: history is not linearizable.\n");
    let read_list = |i: usize| match &ops[i].observed {
        Observed::ReadValues(values) => fmt_list(values),
        _ => String::new(),
    };
    // Writing to a String cannot fail.
    let _ = match violation {
        Violation::UnknownValue { read, value } => writeln!(
            out,
            "Reason: read #{read} (client {}) returned value {value}, which no append on key \
             {key} ever wrote (known or unknown outcome).",
            ops[*read].client
        ),
        Violation::DuplicateValue { read, value } => writeln!(
            out,
            "Reason: read #{read} (client {}) returned value {value} more than once; each \
             value is appended at most once.",
            ops[*read].client
        ),
        Violation::Incomparable {
            shorter,
            longer,
            index,
        } => writeln!(
            out,
            "Reason: reads #{shorter} and #{longer} disagree on the order of the list: at \
             position {index} one saw {} and the other {}; since the list is append-only, one \
             observed list must be a prefix of the other.\n  #{shorter} saw {}\n  #{longer} \
             saw {}",
            list_at(ops[*shorter], *index),
            list_at(ops[*longer], *index),
            read_list(*shorter),
            read_list(*longer)
        ),
        Violation::NoLinearization { stuck, hint, .. } => match stuck {
            Some(stuck) => writeln!(
                out,
                "Reason: no linearization exists. After the longest linearizable prefix below, \
                 no pending operation can take effect next, yet #{stuck} ({}, client {}) \
                 returned at t={} without having taken effect: {hint}.",
                fmt_kind(ops[*stuck]),
                ops[*stuck].client,
                ops[*stuck].ret.unwrap_or(u64::MAX)
            ),
            None => writeln!(out, "Reason: no linearization exists."),
        },
    };
    let _ = writeln!(
        out,
        "Operations on key {key} in call order ({}):",
        ops.len()
    );
    let roles = roles(ops);
    let read_values: FxHashSet<u64> = roles
        .iter()
        .filter_map(|role| match role {
            Role::Read(values) => Some(values.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    for (i, op) in ops.iter().enumerate() {
        let _ = write!(out, "  {}", fmt_op(i, op));
        match roles[i] {
            Role::Ignored(why) => {
                let _ = write!(out, "  (ignored: {why})");
            }
            Role::Append(value) if op.is_unknown() && !read_values.contains(&value) => {
                let _ = write!(out, "  (ignored: {UNOBSERVED})");
            }
            _ => {}
        }
        out.push('\n');
    }
    match violation {
        Violation::NoLinearization { prefix, state, .. } => {
            let _ = writeln!(
                out,
                "Longest linearizable prefix found ({} operations):",
                prefix.len()
            );
            let mut len = 0;
            for &i in prefix {
                match ops[i].kind {
                    OpKind::Append { value } => {
                        len += 1;
                        let unknown = if ops[i].is_unknown() {
                            " (outcome unknown to its client)"
                        } else {
                            ""
                        };
                        let _ = writeln!(
                            out,
                            "  #{i} Append({value}){unknown} -> list now has {len} values"
                        );
                    }
                    OpKind::Read => {
                        let _ = writeln!(out, "  #{i} Read -> {}", read_list(i));
                    }
                }
            }
            let _ = writeln!(out, "List after that prefix: {}", fmt_list(state));
        }
        _ => {
            let _ = writeln!(
                out,
                "(Rejected by a sanity check before the search; no linearizable prefix computed.)"
            );
        }
    }
    out
}

pub(super) fn list_at(op: &Operation, index: usize) -> String {
    match &op.observed {
        Observed::ReadValues(values) => match values.get(index) {
            Some(value) => value.to_string(),
            None => "nothing".to_string(),
        },
        _ => "nothing".to_string(),
    }
}
