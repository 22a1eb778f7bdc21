//! Validation of `entityTypeId` and `id` arguments.
//!
//! The JS contract accepts a positive safe integer (`1 ..= 2^53 - 1`) given as a number, or its
//! canonical decimal string (`"8061"`: digits only, no sign, no leading zero, no spaces).

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// An id argument as it came from JS, before validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawId<'a> {
    /// A JS number.
    Number(f64),
    /// A JS string (a bigint arrives here as its decimal text).
    Text(&'a str),
    /// Anything else: null, undefined, boolean, object, array, symbol, function.
    Other,
}

/// Returns the id as an integer, or `None` when it is not a positive safe integer.
pub fn parse_id(raw: RawId<'_>) -> Option<u64> {
    match raw {
        RawId::Number(n) => {
            // The range on the float first (NaN and infinities fail it): `n as u64` saturates.
            // Whole by `trunc`, one wasm instruction, not a round trip through u64.
            if n >= 1.0 && n <= MAX_SAFE_INTEGER as f64 && n == n.trunc() {
                Some(n as u64)
            } else {
                None
            }
        }
        RawId::Text(s) => parse_canonical(s),
        RawId::Other => None,
    }
}

/// Parses a canonical decimal: `[1-9][0-9]*`, at most `MAX_SAFE_INTEGER`.
fn parse_canonical(s: &str) -> Option<u64> {
    if s.as_bytes().first() == Some(&b'0') {
        return None;
    }
    decimal(s.as_bytes(), 16).filter(|&value| value <= MAX_SAFE_INTEGER)
}

/// The value of 1 to `max_digits` (at most 19) ASCII digits, leading zeros allowed; `None` for
/// anything else. The crate's one decimal reader (`str::parse` would cost wasm bytes).
pub fn decimal(digits: &[u8], max_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    digits.iter().try_fold(0, |value: u64, &b| {
        b.is_ascii_digit().then(|| value * 10 + u64::from(b - b'0'))
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn decimal_reads_1_to_max_digits_and_nothing_else() {
        assert_eq!(decimal(b"0", 1), Some(0));
        assert_eq!(decimal(b"007", 3), Some(7));
        assert_eq!(decimal(b"65535", 5), Some(65_535));
        assert_eq!(
            decimal(b"9999999999999999999", 19),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"1234", b"1a", b"-1", b"+1", b" 1", b"1."] {
            assert_eq!(decimal(bad, 3), None, "{bad:?}");
        }
    }

    #[test]
    fn accepts_positive_safe_integers() {
        assert_eq!(parse_id(RawId::Number(1.0)), Some(1));
        assert_eq!(parse_id(RawId::Number(1268.0)), Some(1268));
        assert_eq!(
            parse_id(RawId::Number(MAX_SAFE_INTEGER as f64)),
            Some(MAX_SAFE_INTEGER)
        );
        assert_eq!(parse_id(RawId::Text("8061")), Some(8061));
        assert_eq!(
            parse_id(RawId::Text("9007199254740991")),
            Some(MAX_SAFE_INTEGER)
        );
    }

    #[test]
    fn rejects_everything_the_contract_lists() {
        for n in [
            0.0,
            -1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9007199254740992.0,
            -0.0,
            1e300,
        ] {
            assert_eq!(parse_id(RawId::Number(n)), None, "{n}");
        }
        for s in [
            "01",
            " 1",
            "1 ",
            "1e3",
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            "0x10",
            "9007199254740992",
            "99999999999999999999",
            "１",
        ] {
            assert_eq!(parse_id(RawId::Text(s)), None, "{s:?}");
        }
        assert_eq!(parse_id(RawId::Other), None);
    }

    proptest::proptest! {
        #[test]
        fn every_safe_integer_round_trips(n in 1u64..=MAX_SAFE_INTEGER) {
            proptest::prop_assert_eq!(parse_id(RawId::Number(n as f64)), Some(n));
            proptest::prop_assert_eq!(parse_id(RawId::Text(&n.to_string())), Some(n));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,24}") {
            if let Some(n) = parse_id(RawId::Text(&s)) {
                proptest::prop_assert_eq!(n.to_string(), s);
            }
        }
    }
}
