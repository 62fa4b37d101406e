//! [`Secret`]: a password or token from the config that never shows in logs, `Debug` output
//! or error messages, and that may be kept in a file of its own.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// A secret setting (a password, a token). Its `Debug` and `Display` print `<redacted>`; read
/// it with [`Secret::expose`] where it is used, and compare it with [`Secret::matches`].
///
/// In a config it is written either as the value itself or as the path of a file holding it
/// (its trailing newline dropped), so that the config can be shared without the secret:
///
/// ```yaml
/// password: s3cr3t
/// password: { file: /run/secrets/broker-password }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    #[must_use]
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for where it is used (never for a log line).
    #[must_use]
    pub const fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: AsRef<[u8]>> Secret<T> {
    /// Whether `given` is this secret, compared in constant time (only the length shows in
    /// the time taken: use secrets long enough that it tells nothing).
    #[must_use]
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_ref().ct_eq(given).into()
    }

    /// Whether the secret is empty (unset).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A dumped config holds no secret: a set secret serialises as `<redacted>`, an unset one as
/// the empty value.
impl<T: AsRef<[u8]>> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.is_empty() { "" } else { "<redacted>" })
    }
}

/// How a secret is written in a config: the value, or `{ file: <path> }`.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Written<T> {
    InFile { file: PathBuf },
    Value(T),
}

impl<'de, T> Deserialize<'de> for Secret<T>
where
    T: Deserialize<'de> + FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Written::<T>::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected the secret itself, or `{ file: <path> }`")
        })? {
            Written::Value(value) => Ok(Self(value)),
            Written::InFile { file } => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "cannot read the secret file {}: {e}",
                        file.display()
                    ))
                })?;
                text.trim_end_matches(['\n', '\r'])
                    .parse()
                    .map(Self)
                    .map_err(|e| {
                        serde::de::Error::custom(format!(
                            "the secret file {} does not hold what is expected: {e}",
                            file.display()
                        ))
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Settings {
        password: Secret,
    }

    fn read(yaml: &str) -> Result<Settings, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_secret_never_shows_in_debug_or_display() {
        let settings = read("password: hunter2-and-more").expect("a plain secret reads");
        assert_eq!(settings.password.expose(), "hunter2-and-more");
        let shown = format!("{settings:?} {}", settings.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_secret_is_read_from_its_file_without_the_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("password");
        std::fs::write(&path, "from-a-file\n").expect("secret file written");
        let settings = read(&format!("password: {{ file: {} }}", path.display()))
            .expect("a secret file reads");
        assert_eq!(settings.password.expose(), "from-a-file");
        std::fs::remove_dir_all(&dir).expect("temp dir removed");
    }

    #[test]
    fn a_missing_secret_file_is_named_in_the_error() {
        let error = read("password: { file: /nonexistent/switchboard-secret }")
            .expect_err("a missing file is an error");
        assert!(
            error.contains("cannot read the secret file /nonexistent/switchboard-secret"),
            "{error}"
        );
    }

    #[test]
    fn a_mistyped_file_form_is_refused() {
        let error = read("password: { file: /run/secret, mode: 600 }")
            .expect_err("an unknown key next to `file` is an error");
        assert!(error.contains("`{ file: <path> }`"), "{error}");
    }

    #[test]
    fn a_secret_matches_only_itself() {
        let secret = Secret::new("token-one".to_owned());
        assert!(secret.matches(b"token-one"));
        assert!(!secret.matches(b"token-two"));
        assert!(!secret.matches(b"token-on"));
        assert!(!secret.is_empty());
        assert!(Secret::<String>::default().is_empty());
    }
}
