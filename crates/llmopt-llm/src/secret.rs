//! A string that never prints: provider keys live in a [`SecretString`] from the moment they
//! are read, so a `{:?}` of a config or a client cannot leak them into a log line.

use std::fmt;

/// An API key or token. `Debug` and `Display` print `[redacted]`; the value is reachable only
/// through [`SecretString::expose`], whose name makes every use easy to find in review.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The secret itself, for the one place that puts it in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> SecretString {
        SecretString(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> SecretString {
        SecretString(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for SecretString {
    /// Serialises as the redacted marker: a config dumped back out never carries the key.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let secret = SecretString::new("sk-live-1234567890");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert!(!format!("{secret:?}").contains("1234"));
        assert!(!serde_json::to_string(&secret).unwrap().contains("1234"));
        assert_eq!(secret.expose(), "sk-live-1234567890");
        let parsed: SecretString = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(parsed.expose(), "abc");
    }
}
