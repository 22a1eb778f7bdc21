//! The numbers that cross between the wasm and `pkg-template/runtime.js`, named on both sides.
//!
//! Each table here is an enum whose values runtime.js declares as a `const` object of the same
//! name (`FRAME_AUTH = { NO_BX24: 0, ... }`); a native test per table reads runtime.js and fails
//! when the two disagree. The JSON member names (`response::Key` and runtime.js's `KEYS`) and
//! the JSON kinds (`response::Kind` and `JSON_KIND`) are checked the same way. Everything else
//! crosses by name: the config and option readers (`bindings/read.rs`) ask for each member by
//! its JS name.

/// Declares a boundary table: the enum, its runtime.js name, and each value's JS name.
macro_rules! table {
    (
        $(#[$doc:meta])*
        $name:ident in $js:literal {
            $($(#[$variant_doc:meta])* $variant:ident = $number:literal as $js_name:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_doc])* $variant = $number,)*
        }

        impl $name {
            /// The runtime.js `const` that names the values.
            pub const JS_TABLE: &'static str = $js;
            /// Every value with its JS name.
            pub const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $js_name),)*];

            /// The value runtime.js sent as `number`, if it is one of the table's (runtime.js
            /// sends only the table's integers; anything else is read as its integer part).
            pub fn from_js(number: f64) -> Option<$name> {
                match number as u32 {
                    $($number => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

table! {
    /// How runtime.js's `send` classified an answer's body: `[status, body, class]`.
    BodyClass in "BODY" {
        /// Parsed by `JSON.parse`; the body is the value.
        Json = 0 as "JSON",
        /// Empty or whitespace.
        Empty = 1 as "EMPTY",
        /// Not JSON, starting with `<`.
        Html = 2 as "HTML",
        /// Anything else.
        Other = 3 as "OTHER",
    }
}

table! {
    /// Why runtime.js's `send` got no answer: `[0, failure, cause]`.
    SendFailure in "FAILURE" {
        /// Below HTTP (a refused connection, CORS, a fetch that threw).
        Network = 1 as "NETWORK",
        /// Out of the attempt's time.
        Timeout = 2 as "TIMEOUT",
        /// The call's signal fired.
        Aborted = 3 as "ABORTED",
    }
}

table! {
    /// What runtime.js's `frameAuth` found: `[state, ...]`.
    FrameAuth in "FRAME_AUTH" {
        /// No BX24 in the page.
        NoBx24 = 0 as "NO_BX24",
        /// BX24 did not answer in time.
        NoAnswer = 1 as "NO_ANSWER",
        /// No token to be had: send through `BX24.callMethod`.
        ViaBx24 = 2 as "VIA_BX24",
        /// `[DIRECT, restBase, token]`: call the portal directly.
        Direct = 3 as "DIRECT",
        /// The call's signal fired.
        Aborted = 4 as "ABORTED",
        /// `[INIT_THREW, error]`: `BX24.init` threw.
        InitThrew = 5 as "INIT_THREW",
    }
}

table! {
    /// What runtime.js's `refreshToken` got from `onTokenExpired`: `[answer, token or cause]`.
    Refresh in "REFRESH" {
        /// `[TOKEN, token]`.
        Token = 0 as "TOKEN",
        /// `[FAILED, cause]`: it threw, gave no string, or the call was aborted.
        Failed = 1 as "FAILED",
        /// `[TIMED_OUT, cause]`: it did not settle within the call's time.
        TimedOut = 2 as "TIMED_OUT",
    }
}

table! {
    /// Which member of an abort signal runtime.js's `signalGet` reads.
    SignalRead in "SIGNAL" {
        /// `signal.aborted`.
        Aborted = 0 as "ABORTED",
        /// `signal.reason`.
        Reason = 1 as "REASON",
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use crate::response::{Key, Kind};

    const RUNTIME: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pkg-template/runtime.js"
    ));

    /// The text between `const NAME = ` + `open` and the next `close` in runtime.js.
    fn declaration(name: &str, open: char, close: char) -> &'static str {
        let head = format!("const {name} = {open}");
        let start = RUNTIME
            .find(&head)
            .unwrap_or_else(|| panic!("runtime.js declares `{head}`"))
            + head.len();
        let end = RUNTIME[start..].find(close).unwrap();
        &RUNTIME[start..start + end]
    }

    /// runtime.js's `const NAME = { A: 0, B: 1 }`, as `[("A", 0), ("B", 1)]`.
    pub fn js_table(name: &str) -> Vec<(String, u32)> {
        declaration(name, '{', '}')
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (key, value) = entry.split_once(':').unwrap();
                (key.trim().to_owned(), value.trim().parse().unwrap())
            })
            .collect()
    }

    fn rust_table<T: Copy + Into<u32>>(all: &[(T, &str)]) -> Vec<(String, u32)> {
        all.iter()
            .map(|&(value, name)| (name.to_owned(), value.into()))
            .collect()
    }

    macro_rules! into_u32 {
        ($($t:ty),*) => {$(
            impl From<$t> for u32 {
                fn from(value: $t) -> u32 {
                    value as u32
                }
            }
        )*};
    }
    into_u32!(BodyClass, SendFailure, FrameAuth, Refresh, SignalRead);

    #[test]
    fn runtime_js_names_the_body_classes() {
        assert_eq!(js_table(BodyClass::JS_TABLE), rust_table(BodyClass::ALL));
    }

    #[test]
    fn runtime_js_names_the_send_failures() {
        assert_eq!(
            js_table(SendFailure::JS_TABLE),
            rust_table(SendFailure::ALL)
        );
    }

    #[test]
    fn runtime_js_names_the_frame_auth_states() {
        assert_eq!(js_table(FrameAuth::JS_TABLE), rust_table(FrameAuth::ALL));
    }

    #[test]
    fn runtime_js_names_the_refresh_answers() {
        assert_eq!(js_table(Refresh::JS_TABLE), rust_table(Refresh::ALL));
    }

    #[test]
    fn runtime_js_names_the_signal_reads() {
        assert_eq!(js_table(SignalRead::JS_TABLE), rust_table(SignalRead::ALL));
    }

    #[test]
    fn runtime_js_names_the_json_kinds() {
        let rust: Vec<(String, u32)> = Kind::ALL
            .iter()
            .map(|&(kind, name)| (name.to_owned(), kind as u32))
            .collect();
        assert_eq!(js_table("JSON_KIND"), rust);
        for (kind, _) in Kind::ALL {
            assert_eq!(Kind::from_js(kind as u32), kind);
        }
    }

    #[test]
    fn runtime_js_lists_the_keys_in_order() {
        let names: Vec<&str> = declaration("KEYS", '[', ']')
            .split(',')
            .map(|n| n.trim().trim_matches('\''))
            .collect();
        assert_eq!(names, Key::ALL.map(Key::name));
    }

    #[test]
    fn from_js_reads_each_number_of_a_table_and_nothing_else() {
        for &(value, _) in FrameAuth::ALL {
            assert_eq!(FrameAuth::from_js(value as u32 as f64), Some(value));
        }
        assert_eq!(FrameAuth::from_js(6.0), None);
        assert_eq!(SendFailure::from_js(0.0), None);
    }
}
