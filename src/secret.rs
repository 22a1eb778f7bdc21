//! Secrets that cannot be printed.
//!
//! A webhook URL carries its secret in the path and an OAuth request carries the access token in
//! its body, so both travel inside [`Secret`]. Its `Debug` and `Display` print `***`; the only way
//! to read the value is [`Secret::expose`], which the transports call at the moment of sending.

use core::fmt;

/// A string that never appears in `Debug`, `Display`, errors, logs or panics.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a sensitive string.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The raw value, for the transport only. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("s3cr3t-token".into());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    Secret(***),\n)");
        assert_eq!(s.expose(), "s3cr3t-token");
    }
}
