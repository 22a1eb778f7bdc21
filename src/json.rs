//! A small, strict JSON reader for the portal's answers.
//!
//! The native side of [`crate::response::Json`]: `cargo test` reads answers with it, while the
//! wasm reads `JSON.parse`'s values instead and carries no JSON parser. It borrows from the
//! input, never panics on any input (depth is bounded), keeps numbers as text (floats are only
//! approximated where a wait time needs one).

use std::borrow::Cow;

use crate::response::{Key, Kind};

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// A parsed JSON value borrowing from the input text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as its JSON text.
    Number(&'a str),
    /// A string, as its JSON text between the quotes (escapes not yet decoded).
    Str(&'a str),
    /// An array.
    Array(Vec<Value<'a>>),
    /// An object: its members in order.
    Object(Vec<(&'a str, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The member `key` of an object (the first one, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(k, _)| decode(k) == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The decoded string, if this is a string.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self {
            Value::Str(raw) => Some(decode(raw)),
            _ => None,
        }
    }

    /// The number's value, approximately (enough for timestamps and delays).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(text) => Some(approximate(text)),
            _ => None,
        }
    }
}

/// The response readers' view (natively; in the browser they read `JSON.parse`'s values).
impl crate::response::Json for Value<'_> {
    fn get(&self, key: Key) -> Option<Self> {
        Value::get(self, key.name()).cloned()
    }

    fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(true) => Kind::True,
            Value::Bool(false) => Kind::False,
            Value::Number(_) => Kind::Number,
            Value::Str(_) => Kind::Str,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    fn as_str(&self) -> Option<String> {
        Value::as_str(self).map(Cow::into_owned)
    }

    fn as_f64(&self) -> Option<f64> {
        Value::as_f64(self)
    }

    fn command(&self, index: usize) -> Option<Self> {
        let mut key = String::from("k");
        crate::envelope::push_u64(&mut key, index as u64);
        Value::get(self, &key).cloned()
    }
}

/// Parses a whole JSON text. `None` for anything that is not exactly one JSON value.
pub fn parse(text: &str) -> Option<Value<'_>> {
    let mut parser = Parser { text, pos: 0 };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    (parser.pos == text.len()).then_some(value)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_whitespace();
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::Str),
            b't' => self.literal("true").map(|_| Value::Bool(true)),
            b'f' => self.literal("false").map(|_| Value::Bool(false)),
            b'n' => self.literal("null").map(|_| Value::Null),
            _ => self.number().map(Value::Number),
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value<'a>> {
        self.eat(b'{')?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.eat(b'}').is_none() {
            loop {
                self.skip_whitespace();
                let key = self.string()?;
                self.skip_whitespace();
                self.eat(b':')?;
                let value = self.value(depth + 1)?;
                members.push((key, value));
                self.skip_whitespace();
                if self.eat(b',').is_none() {
                    self.eat(b'}')?;
                    break;
                }
            }
        }
        Some(Value::Object(members))
    }

    fn array(&mut self, depth: usize) -> Option<Value<'a>> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat(b']').is_none() {
            loop {
                items.push(self.value(depth + 1)?);
                self.skip_whitespace();
                if self.eat(b',').is_none() {
                    self.eat(b']')?;
                    break;
                }
            }
        }
        Some(Value::Array(items))
    }

    /// A string token; returns the text between the quotes, escapes validated but not decoded.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let hex = self.text.get(self.pos + 1..self.pos + 5)?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
        let raw = &self.text[start..self.pos];
        self.pos += 1;
        Some(raw)
    }

    /// A number token: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.require_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        Some(&self.text[start..self.pos])
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Option<()> {
        matches!(self.peek(), Some(b'0'..=b'9')).then(|| self.digits())
    }
}

/// Decodes the escapes of a string token's text. Unpaired surrogates become U+FFFD.
pub fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let high = hex4(&mut chars);
                if (0xD800..0xDC00).contains(&high) && chars.as_str().starts_with("\\u") {
                    let mut ahead = chars.clone();
                    ahead.next();
                    ahead.next();
                    let low = hex4(&mut ahead);
                    if (0xDC00..0xE000).contains(&low) {
                        chars = ahead;
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                            .unwrap_or('\u{FFFD}')
                    } else {
                        '\u{FFFD}'
                    }
                } else {
                    char::from_u32(high).unwrap_or('\u{FFFD}')
                }
            }
            Some(other) => other,
            None => break,
        };
        out.push(decoded);
    }
    Cow::Owned(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
    }
    value
}

/// Approximates a JSON number's value without the float parser (which would cost wasm bytes).
fn approximate(text: &str) -> f64 {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.bytes().position(|b| b == b'e' || b == b'E') {
        Some(i) => (
            &rest[..i],
            rest[i + 1..].strip_prefix('+').unwrap_or(&rest[i + 1..]),
        ),
        None => (rest, "0"),
    };
    let mut value = 0.0;
    let mut scale = 1.0;
    let mut after_point = false;
    for b in mantissa.bytes() {
        match b {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                value = value * 10.0 + f64::from(b - b'0');
                if after_point {
                    scale *= 10.0;
                }
            }
            _ => {}
        }
    }
    let exp_negative = exponent.starts_with('-');
    let mut exp: i32 = 0;
    for b in exponent.bytes().filter(u8::is_ascii_digit) {
        exp = exp.saturating_mul(10).saturating_add(i32::from(b - b'0'));
    }
    let mut result = value / scale
        * 10f64.powi(if exp_negative {
            -exp.min(400)
        } else {
            exp.min(400)
        });
    if negative {
        result = -result;
    }
    result
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_success() {
        let text = r#"{"result": [], "time": {"start":1721657688.755373,"finish":1721657689.65017,"duration":0.8947970867156982,"processing":0.6092040538787842,"date_start":"2024-07-22T16:14:48+02:00","date_finish":"2024-07-22T16:14:49+02:00","operating":0}}"#;
        let v = parse(text).unwrap();
        assert_eq!(v.get("result"), Some(&Value::Array(Vec::new())));
        let time = v.get("time").unwrap();
        assert!((time.get("start").unwrap().as_f64().unwrap() - 1721657688.755373).abs() < 1e-5);
        assert_eq!(
            time.get("date_start").unwrap().as_str().unwrap(),
            "2024-07-22T16:14:48+02:00"
        );
    }

    #[test]
    fn decodes_escapes() {
        let v = parse(r#"{"e":"\u041e\u0448\u0438\u0431\u043a\u0430 \"x\" \ud83d\ude00 \ud800"}"#)
            .unwrap();
        assert_eq!(
            v.get("e").unwrap().as_str().unwrap(),
            "Ошибка \"x\" 😀 \u{FFFD}"
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            " ",
            "{",
            "{\"result\":[]",
            "<html>502</html>",
            "{'a':1}",
            "[1,]",
            "01",
            "1.",
            "-",
            "\"\\x\"",
            "\"a\nb\"",
            "{} {}",
            "nul",
            "\"\\u12\"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), None);
    }

    #[test]
    fn numbers() {
        for (text, expected) in [
            ("0", 0.0),
            ("-12", -12.0),
            ("1.5", 1.5),
            ("2e3", 2000.0),
            ("1721657748", 1721657748.0),
            ("25E-1", 2.5),
        ] {
            assert_eq!(parse(text).unwrap().as_f64().unwrap(), expected, "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }

        #[test]
        fn json_like_text_never_panics(s in "[\\[\\]{}\",:0-9.eE+\\-tfnul \\\\a-z]{0,64}") {
            if let Some(v) = parse(&s) {
                let _ = v.get("a");
                let _ = v.as_f64();
                let _ = v.as_str();
            }
        }
    }
}
