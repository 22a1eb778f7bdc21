//! Request parameters: query strings and form bodies (with PHP-style `a[b][]=c` nesting) into JSON.

use serde_json::{Map, Value};

/// Decode `%XX` escapes and `+` (as space) of one query-string component.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode a component for a query string (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Parse `a=1&b[c]=2&d[]=3&d[]=4` into `{"a":"1","b":{"c":"2"},"d":["3","4"]}`, merging into `into`.
pub fn parse_query_into(qs: &str, into: &mut Map<String, Value>) {
    for pair in qs.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let key = url_decode(k);
        let val = Value::String(url_decode(v));
        let (head, path) = split_key(&key);
        if head.is_empty() {
            continue;
        }
        insert(into, head, &path, val);
    }
}

/// Parse a query string into a JSON object.
pub fn parse_query(qs: &str) -> Map<String, Value> {
    let mut m = Map::new();
    parse_query_into(qs, &mut m);
    m
}

// "a[b][]" -> ("a", ["b", ""])
fn split_key(key: &str) -> (String, Vec<String>) {
    let Some(open) = key.find('[') else {
        return (key.to_string(), vec![]);
    };
    let head = key[..open].to_string();
    let mut path = vec![];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                path.push(stripped[..close].to_string());
                rest = &stripped[close + 1..];
            }
            None => break,
        }
    }
    (head, path)
}

fn insert(map: &mut Map<String, Value>, head: String, path: &[String], val: Value) {
    if path.is_empty() {
        map.insert(head, val);
        return;
    }
    let slot = map.entry(head).or_insert_with(|| {
        if path[0].is_empty() {
            Value::Array(vec![])
        } else {
            Value::Object(Map::new())
        }
    });
    insert_value(slot, path, val);
}

fn insert_value(slot: &mut Value, path: &[String], val: Value) {
    let (first, rest) = (&path[0], &path[1..]);
    if first.is_empty() {
        // append
        if let Value::Object(m) = slot {
            let k = m.len().to_string();
            if rest.is_empty() {
                m.insert(k, val);
            } else {
                let mut child = new_container(&rest[0]);
                insert_value(&mut child, rest, val);
                m.insert(k, child);
            }
            return;
        }
        if !slot.is_array() {
            *slot = Value::Array(vec![]);
        }
        let arr = slot.as_array_mut().unwrap();
        if rest.is_empty() {
            arr.push(val);
        } else {
            let mut child = new_container(&rest[0]);
            insert_value(&mut child, rest, val);
            arr.push(child);
        }
        return;
    }
    if let Value::Array(a) = slot {
        // turn into an object keyed by index
        let m: Map<String, Value> = a
            .drain(..)
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect();
        *slot = Value::Object(m);
    }
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    let m = slot.as_object_mut().unwrap();
    if rest.is_empty() {
        m.insert(first.clone(), val);
    } else {
        let child = m
            .entry(first.clone())
            .or_insert_with(|| new_container(&rest[0]));
        insert_value(child, rest, val);
    }
}

fn new_container(next: &str) -> Value {
    if next.is_empty() {
        Value::Array(vec![])
    } else {
        Value::Object(Map::new())
    }
}

/// How an integer parameter was given.
#[derive(Debug, PartialEq)]
pub enum IntParam {
    Missing,
    Invalid(String),
    Value(i64),
}

/// Read an integer parameter: a JSON integer (or integral float) or a decimal string.
pub fn int_param(params: &Map<String, Value>, name: &str) -> IntParam {
    match params.get(name) {
        None | Some(Value::Null) => IntParam::Missing,
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                IntParam::Value(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15) {
                IntParam::Value(f as i64)
            } else {
                IntParam::Invalid(n.to_string())
            }
        }
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                return IntParam::Missing;
            }
            let digits = t.strip_prefix('-').unwrap_or(t);
            if !digits.is_empty()
                && digits.len() <= 18
                && digits.bytes().all(|c| c.is_ascii_digit())
            {
                IntParam::Value(t.parse().unwrap_or(0))
            } else {
                IntParam::Invalid(s.clone())
            }
        }
        Some(other) => IntParam::Invalid(other.to_string()),
    }
}

/// Truthiness of a flag parameter (`halt`): `1`, `true`, `"1"`, `"true"`, `"Y"`.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) != 0.0,
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true" | "Y" | "y" | "TRUE" | "True"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting() {
        let m =
            parse_query("a=1&b[c]=2&d[]=3&d[]=4&e[f][g]=%20x+y&cmd[k0]=crm.item.delete%3Fid%3D1");
        assert_eq!(
            Value::Object(m),
            json!({"a":"1","b":{"c":"2"},"d":["3","4"],"e":{"f":{"g":" x y"}},"cmd":{"k0":"crm.item.delete?id=1"}})
        );
    }

    #[test]
    fn ints() {
        let m = parse_query("a=12&b=x&c=&d=1.5");
        assert_eq!(int_param(&m, "a"), IntParam::Value(12));
        assert!(matches!(int_param(&m, "b"), IntParam::Invalid(_)));
        assert_eq!(int_param(&m, "c"), IntParam::Missing);
        assert!(matches!(int_param(&m, "d"), IntParam::Invalid(_)));
        assert_eq!(int_param(&m, "zz"), IntParam::Missing);
        let big = parse_query("a=9007199254740991&b=99999999999999999999");
        assert_eq!(int_param(&big, "a"), IntParam::Value(9_007_199_254_740_991));
        assert!(matches!(int_param(&big, "b"), IntParam::Invalid(_)));
        let j = json!({"a": 5, "b": 5.0, "c": 5.5});
        let j = j.as_object().unwrap();
        assert_eq!(int_param(j, "a"), IntParam::Value(5));
        assert_eq!(int_param(j, "b"), IntParam::Value(5));
        assert!(matches!(int_param(j, "c"), IntParam::Invalid(_)));
    }
}
