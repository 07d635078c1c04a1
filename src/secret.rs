//! Secret-bearing values: client secrets, API keys, bearer tokens, request passwords.
//! Their `Debug` and `Display` print a redaction marker and they implement no `Serialize`,
//! so a secret cannot reach a log line, an error body or an audit record by accident.

use std::fmt;

/// The marker printed in place of every secret.
pub const REDACTED: &str = "<redacted>";

/// A string that must never be printed. Read it with [`Secret::expose`], at the one
/// place that has to put it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The clear value. Call only where it is sent (a token request, an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Reads a secret-bearing file (a client secret, a federated token, a webhook's signing
/// secret), trimmed; an empty file is an error. The message never contains the contents.
pub fn read_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value = text.trim();
    if value.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(Secret::new(value))
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), format!("Some({REDACTED})"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
