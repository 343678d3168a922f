//! Field checks done before a command is proposed (so a bad request costs no log entry) and
//! again at apply (so a command that skipped them can never reach storage).
//!
//! Field names are the proto field names (`payment_id`, `fence.token`, ...), so the service
//! can put them in the `INVALID_ARGUMENT` error (metadata `field`) unchanged.

use super::commands::{AcquireLease, EventKind, KeepAliveLease, LeaseFence, ReleaseLease, Submit};

/// The most characters an id, key, lease name or holder may have.
pub const MAX_ID_CHARS: usize = 255;
/// The most metadata entries a submit may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// The most characters a metadata key may have.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// The most bytes all metadata keys and values may total.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The shortest lease time to live.
pub const MIN_LEASE_TTL_MS: u64 = 1_000;
/// The longest lease time to live.
pub const MAX_LEASE_TTL_MS: u64 = 3_600_000;

/// A request field that breaks a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldViolation {
    /// The proto field name (`"amount_minor"`, `"fence.token"`).
    pub field: &'static str,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    fn new(field: &'static str, description: String) -> Self {
        FieldViolation { field, description }
    }
}

/// Checks a submit: ids and key 1 to 255 characters without control characters, a specified
/// kind, a positive amount, a three-letter upper-case currency, bounded metadata, and a
/// well-formed fence if there is one. Reports the first violation in field order.
pub fn validate_submit(submit: &Submit) -> Result<(), FieldViolation> {
    check_text("payment_id", &submit.payment_id, MAX_ID_CHARS)?;
    check_text("idempotency_key", &submit.idempotency_key, MAX_ID_CHARS)?;
    match EventKind::try_from(submit.kind) {
        Ok(EventKind::Unspecified) => {
            return Err(FieldViolation::new(
                "kind",
                "must be specified (AUTHORIZED, CAPTURED, VOIDED or REFUNDED)".into(),
            ))
        }
        Err(_) => {
            return Err(FieldViolation::new(
                "kind",
                format!("unknown event kind {}", submit.kind),
            ))
        }
        Ok(_) => {}
    }
    if submit.amount_minor <= 0 {
        return Err(FieldViolation::new(
            "amount_minor",
            format!("must be positive, got {}", submit.amount_minor),
        ));
    }
    let currency = &submit.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldViolation::new(
            "currency",
            format!("must be exactly three upper-case ASCII letters (ISO 4217), got {currency:?}"),
        ));
    }
    check_metadata(submit)?;
    if let Some(fence) = &submit.fence {
        check_fence(fence)?;
    }
    Ok(())
}

/// Checks an acquire: name and holder 1 to 255 characters without control characters, and a
/// time to live between [`MIN_LEASE_TTL_MS`] and [`MAX_LEASE_TTL_MS`].
pub fn validate_acquire(acquire: &AcquireLease) -> Result<(), FieldViolation> {
    check_text("name", &acquire.name, MAX_ID_CHARS)?;
    check_text("holder", &acquire.holder, MAX_ID_CHARS)?;
    if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&acquire.ttl_ms) {
        return Err(FieldViolation::new(
            "ttl_ms",
            format!(
                "must be between {MIN_LEASE_TTL_MS} and {MAX_LEASE_TTL_MS} milliseconds, got {}",
                acquire.ttl_ms
            ),
        ));
    }
    Ok(())
}

/// Checks a keep-alive: name and holder as for [`validate_acquire`], and a non-zero token.
pub fn validate_keep_alive(keep_alive: &KeepAliveLease) -> Result<(), FieldViolation> {
    check_lease_claim(&keep_alive.name, &keep_alive.holder, keep_alive.token)
}

/// Checks a release: name and holder as for [`validate_acquire`], and a non-zero token.
pub fn validate_release(release: &ReleaseLease) -> Result<(), FieldViolation> {
    check_lease_claim(&release.name, &release.holder, release.token)
}

fn check_lease_claim(name: &str, holder: &str, token: u64) -> Result<(), FieldViolation> {
    check_text("name", name, MAX_ID_CHARS)?;
    check_text("holder", holder, MAX_ID_CHARS)?;
    if token == 0 {
        return Err(FieldViolation::new(
            "token",
            "must be the token the lease was granted with (never 0)".into(),
        ));
    }
    Ok(())
}

fn check_fence(fence: &LeaseFence) -> Result<(), FieldViolation> {
    check_text("fence.lease", &fence.lease, MAX_ID_CHARS)?;
    if fence.token == 0 {
        return Err(FieldViolation::new(
            "fence.token",
            "must be the token the lease was granted with (never 0)".into(),
        ));
    }
    Ok(())
}

fn check_metadata(submit: &Submit) -> Result<(), FieldViolation> {
    let metadata = &submit.metadata;
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(FieldViolation::new(
            "metadata",
            format!(
                "at most {MAX_METADATA_ENTRIES} entries, got {}",
                metadata.len()
            ),
        ));
    }
    let mut total_bytes = 0usize;
    for (key, value) in metadata {
        if let Some(problem) = text_problem(key, MAX_METADATA_KEY_CHARS) {
            return Err(FieldViolation::new(
                "metadata",
                format!("key {key:?} {problem}"),
            ));
        }
        total_bytes += key.len() + value.len();
    }
    if total_bytes > MAX_METADATA_BYTES {
        return Err(FieldViolation::new(
            "metadata",
            format!("keys and values total {total_bytes} bytes; at most {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), FieldViolation> {
    match text_problem(value, max_chars) {
        None => Ok(()),
        Some(problem) => Err(FieldViolation::new(field, problem)),
    }
}

/// Whether `c` (not a control character) prints: not a format character that renders as
/// nothing (zero-width spaces and joiners, direction marks and overrides, the byte-order mark),
/// not a line or paragraph separator, not private-use and not a noncharacter. Two ids that
/// look identical on an operator's screen must be the same id.
fn is_printable(c: char) -> bool {
    !matches!(c as u32,
        0x00AD                      // soft hyphen
        | 0x034F                    // combining grapheme joiner
        | 0x061C                    // Arabic letter mark
        | 0x115F..=0x1160           // Hangul fillers
        | 0x180B..=0x180F           // Mongolian variation selectors and vowel separator
        | 0x200B..=0x200F           // zero-width space, joiners, direction marks
        | 0x2028..=0x202E           // line and paragraph separators, embeddings, overrides
        | 0x2060..=0x206F           // word joiner, invisible operators, isolates
        | 0x3164                    // Hangul filler
        | 0xE000..=0xF8FF           // private use
        | 0xFDD0..=0xFDEF           // noncharacters
        | 0xFE00..=0xFE0F           // variation selectors
        | 0xFEFF                    // byte-order mark
        | 0xFFA0                    // halfwidth Hangul filler
        | 0xFFF0..=0xFFFB           // unassigned specials, interlinear annotation
        | 0xE0000..=0xE0FFF         // tags and variation selectors supplement
        | 0xF0000..=0x10FFFF        // supplementary private use
    ) && (c as u32) & 0xFFFE != 0xFFFE // noncharacters U+xFFFE and U+xFFFF in every plane
}

/// What is wrong with `value` as 1 to `max_chars` printable characters.
fn text_problem(value: &str, max_chars: usize) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    let mut chars = 0usize;
    for (position, c) in value.chars().enumerate() {
        if c.is_control() {
            return Some(format!(
                "must not contain control characters (U+{:04X} at character {})",
                c as u32,
                position + 1
            ));
        }
        if !is_printable(c) {
            return Some(format!(
                "must contain only printable characters (U+{:04X} at character {} is invisible \
                 or unassigned)",
                c as u32,
                position + 1
            ));
        }
        chars += 1;
    }
    if chars > max_chars {
        return Some(format!(
            "must be at most {max_chars} characters, got {chars}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn valid_submit() -> Submit {
        Submit {
            payment_id: "pay-1".into(),
            idempotency_key: "key-1".into(),
            kind: EventKind::Authorized as i32,
            amount_minor: 1000,
            currency: "USD".into(),
            metadata: BTreeMap::from([("order".to_owned(), "o-1".to_owned())]),
            fence: Some(LeaseFence {
                lease: "writer".into(),
                token: 3,
            }),
            idempotency_window_ms: 1000,
            event_retention: 0,
        }
    }

    fn violated_field(submit: &Submit) -> &'static str {
        validate_submit(submit).unwrap_err().field
    }

    #[test]
    fn a_well_formed_submit_passes() {
        assert_eq!(validate_submit(&valid_submit()), Ok(()));
        let unfenced = Submit {
            fence: None,
            metadata: BTreeMap::new(),
            ..valid_submit()
        };
        assert_eq!(validate_submit(&unfenced), Ok(()));
    }

    #[test]
    fn amount_must_be_positive() {
        for amount in [0, -1, i64::MIN] {
            let submit = Submit {
                amount_minor: amount,
                ..valid_submit()
            };
            let violation = validate_submit(&submit).unwrap_err();
            assert_eq!(violation.field, "amount_minor");
            assert_eq!(
                violation.description,
                format!("must be positive, got {amount}")
            );
        }
        let one = Submit {
            amount_minor: 1,
            ..valid_submit()
        };
        assert_eq!(validate_submit(&one), Ok(()));
    }

    #[test]
    fn currency_must_be_three_upper_case_ascii_letters() {
        for bad in ["", "US", "USDX", "usd", "Usd", "US1", "ÜSD", "U D"] {
            let submit = Submit {
                currency: bad.into(),
                ..valid_submit()
            };
            assert_eq!(violated_field(&submit), "currency", "{bad:?}");
        }
        let euro = Submit {
            currency: "EUR".into(),
            ..valid_submit()
        };
        assert_eq!(validate_submit(&euro), Ok(()));
    }

    #[test]
    fn payment_id_must_be_1_to_255_characters_without_control_characters() {
        let empty = Submit {
            payment_id: String::new(),
            ..valid_submit()
        };
        assert_eq!(
            validate_submit(&empty).unwrap_err(),
            FieldViolation::new("payment_id", "must not be empty".into())
        );
        let long = Submit {
            payment_id: "é".repeat(256),
            ..valid_submit()
        };
        assert_eq!(
            validate_submit(&long).unwrap_err(),
            FieldViolation::new(
                "payment_id",
                "must be at most 255 characters, got 256".into()
            )
        );
        // 255 two-byte characters are 510 bytes but 255 characters: allowed.
        let longest = Submit {
            payment_id: "é".repeat(255),
            ..valid_submit()
        };
        assert_eq!(validate_submit(&longest), Ok(()));
        let control = Submit {
            payment_id: "pay\n1".into(),
            ..valid_submit()
        };
        assert_eq!(
            validate_submit(&control).unwrap_err(),
            FieldViolation::new(
                "payment_id",
                "must not contain control characters (U+000A at character 4)".into()
            )
        );
    }

    #[test]
    fn ids_must_not_hide_invisible_characters() {
        for (bad, code) in [
            ("pay\u{200B}1", "U+200B"),
            ("\u{FEFF}pay1", "U+FEFF"),
            ("pay\u{2028}1", "U+2028"),
            ("pay\u{E000}", "U+E000"),
            ("pay\u{FFFF}", "U+FFFF"),
        ] {
            let submit = Submit {
                payment_id: bad.into(),
                ..valid_submit()
            };
            let violation = validate_submit(&submit).unwrap_err();
            assert_eq!(violation.field, "payment_id", "{bad:?}");
            assert!(
                violation.description.contains(code),
                "{bad:?}: {}",
                violation.description
            );
        }
        // Printable non-ASCII is fine.
        for good in ["zahlung-ü-1", "支払い-1", "pay 1"] {
            let submit = Submit {
                payment_id: good.into(),
                ..valid_submit()
            };
            assert_eq!(validate_submit(&submit), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn idempotency_key_must_be_1_to_255_characters_without_control_characters() {
        for bad in [String::new(), "k".repeat(256), "k\u{7f}".into()] {
            let submit = Submit {
                idempotency_key: bad,
                ..valid_submit()
            };
            assert_eq!(violated_field(&submit), "idempotency_key");
        }
    }

    #[test]
    fn kind_must_be_specified_and_known() {
        let unspecified = Submit {
            kind: EventKind::Unspecified as i32,
            ..valid_submit()
        };
        assert_eq!(violated_field(&unspecified), "kind");
        let unknown = Submit {
            kind: 17,
            ..valid_submit()
        };
        assert_eq!(
            validate_submit(&unknown).unwrap_err(),
            FieldViolation::new("kind", "unknown event kind 17".into())
        );
    }

    #[test]
    fn metadata_holds_at_most_32_entries() {
        let mut submit = valid_submit();
        submit.metadata = (0..32).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert_eq!(validate_submit(&submit), Ok(()));
        submit.metadata.insert("one-more".into(), "v".into());
        assert_eq!(
            validate_submit(&submit).unwrap_err(),
            FieldViolation::new("metadata", "at most 32 entries, got 33".into())
        );
    }

    #[test]
    fn metadata_keys_are_1_to_64_characters_without_control_characters() {
        for bad in [String::new(), "k".repeat(65), "a\tb".into()] {
            let mut submit = valid_submit();
            submit.metadata.insert(bad.clone(), "v".into());
            assert_eq!(violated_field(&submit), "metadata", "{bad:?}");
        }
        let mut submit = valid_submit();
        submit.metadata.insert("k".repeat(64), "v".into());
        assert_eq!(validate_submit(&submit), Ok(()));
    }

    #[test]
    fn metadata_keys_and_values_total_at_most_4096_bytes() {
        let mut submit = valid_submit();
        submit.metadata = BTreeMap::from([("k".to_owned(), "v".repeat(4095))]);
        assert_eq!(validate_submit(&submit), Ok(()));
        submit.metadata = BTreeMap::from([("k".to_owned(), "v".repeat(4096))]);
        assert_eq!(
            validate_submit(&submit).unwrap_err(),
            FieldViolation::new(
                "metadata",
                "keys and values total 4097 bytes; at most 4096".into()
            )
        );
    }

    #[test]
    fn a_fence_needs_a_lease_name_and_a_non_zero_token() {
        let no_token = Submit {
            fence: Some(LeaseFence {
                lease: "writer".into(),
                token: 0,
            }),
            ..valid_submit()
        };
        assert_eq!(violated_field(&no_token), "fence.token");
        for bad in [String::new(), "w".repeat(256), "w\u{0}".into()] {
            let submit = Submit {
                fence: Some(LeaseFence {
                    lease: bad,
                    token: 1,
                }),
                ..valid_submit()
            };
            assert_eq!(violated_field(&submit), "fence.lease");
        }
    }

    #[test]
    fn the_first_violation_in_field_order_is_reported() {
        let submit = Submit {
            payment_id: String::new(),
            amount_minor: -5,
            currency: "usd".into(),
            ..valid_submit()
        };
        assert_eq!(violated_field(&submit), "payment_id");
    }

    fn valid_acquire() -> AcquireLease {
        AcquireLease {
            name: "writer".into(),
            holder: "worker-a".into(),
            ttl_ms: 10_000,
        }
    }

    #[test]
    fn acquire_needs_a_name_a_holder_and_a_ttl_between_1s_and_1h() {
        assert_eq!(validate_acquire(&valid_acquire()), Ok(()));
        for (ttl, ok) in [
            (999, false),
            (1_000, true),
            (3_600_000, true),
            (3_600_001, false),
            (0, false),
        ] {
            let acquire = AcquireLease {
                ttl_ms: ttl,
                ..valid_acquire()
            };
            assert_eq!(validate_acquire(&acquire).is_ok(), ok, "ttl {ttl}");
            if !ok {
                assert_eq!(validate_acquire(&acquire).unwrap_err().field, "ttl_ms");
            }
        }
        for bad in [String::new(), "n".repeat(256), "n\r".into()] {
            let acquire = AcquireLease {
                name: bad.clone(),
                ..valid_acquire()
            };
            assert_eq!(validate_acquire(&acquire).unwrap_err().field, "name");
            let acquire = AcquireLease {
                holder: bad,
                ..valid_acquire()
            };
            assert_eq!(validate_acquire(&acquire).unwrap_err().field, "holder");
        }
    }

    #[test]
    fn keep_alive_and_release_need_a_name_a_holder_and_a_non_zero_token() {
        let keep_alive = KeepAliveLease {
            name: "writer".into(),
            holder: "worker-a".into(),
            token: 4,
        };
        assert_eq!(validate_keep_alive(&keep_alive), Ok(()));
        let zero = KeepAliveLease {
            token: 0,
            ..keep_alive.clone()
        };
        assert_eq!(validate_keep_alive(&zero).unwrap_err().field, "token");
        let nameless = KeepAliveLease {
            name: String::new(),
            ..keep_alive.clone()
        };
        assert_eq!(validate_keep_alive(&nameless).unwrap_err().field, "name");

        let release = ReleaseLease {
            name: "writer".into(),
            holder: "worker-a".into(),
            token: 4,
        };
        assert_eq!(validate_release(&release), Ok(()));
        let zero = ReleaseLease {
            token: 0,
            ..release.clone()
        };
        assert_eq!(validate_release(&zero).unwrap_err().field, "token");
        let holderless = ReleaseLease {
            holder: "h\u{1b}".into(),
            ..release
        };
        assert_eq!(validate_release(&holderless).unwrap_err().field, "holder");
    }
}
