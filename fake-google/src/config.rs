//! `fake-google --config FILE.json`: clients, users and settings to start with (and to return to
//! on `POST /_fake/reset`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::clients::ClientSpec;
use crate::model::{ControlError, SettingsPatch, UserSpec};
use crate::state::Inner;

/// The start state: `{"clients": [...], "users": [...], "settings": {...}}`, every part optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Clients registered besides the default web client, as `POST /_fake/clients` takes them.
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    /// Known users (shown in the account chooser), as `POST /_fake/users` takes them.
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// Settings, as `POST /_fake/settings` takes them.
    #[serde(default)]
    pub settings: Option<SettingsPatch>,
}

/// Why a config file was refused: the message names the file and what is wrong in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigFile {
    /// Parses a config file's JSON.
    ///
    /// # Errors
    /// [`ConfigError`] with serde's message (the field and line) when it is not a valid file.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError(plain_json_error(&e)))
    }

    /// Reads and parses a config file (its clients and users are checked when the fake starts
    /// with it: [`crate::StartError::Config`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the path and the problem (unreadable, bad JSON, unknown field).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{shown}: cannot read it: {e}")))?;
        Self::from_json(&text).map_err(|e| ConfigError(format!("{shown}: {e}")))
    }
}

/// serde_json's message in words a person writing a config file knows: "not valid JSON" with a hint for syntax
/// (no "expected ident"), and JSON's own type names for a value of the wrong type (no "sequence", "u16").
fn plain_json_error(e: &serde_json::Error) -> String {
    let at = format!("line {} column {}", e.line(), e.column());
    let full = e.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(message, _)| message);
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            let hint = match message {
                "expected ident" => {
                    "a bare word where JSON needs a \"quoted string\", a number, true, false or null"
                }
                "key must be a string" => "keys must be in double quotes",
                "expected value" => "a value is missing or malformed",
                "trailing comma" => "a comma before a closing bracket",
                other => other,
            };
            format!("not valid JSON at {at}: {hint}")
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            let mut plain = message.to_owned();
            for (from, to) in [
                ("a sequence", "a list"),
                ("a boolean", "true or false"),
                ("a map", "an object"),
                ("struct ", "an object "),
                ("u16", "a whole number"),
                ("u32", "a whole number"),
                ("u64", "a whole number"),
                ("usize", "a whole number"),
            ] {
                plain = plain.replace(from, to);
            }
            format!("{plain} at {at}")
        }
    }
}

impl Inner {
    /// Applies a config file: settings, then clients, then users. Errors name the entry
    /// (`clients[1]: ...`).
    pub(crate) fn apply_config(&self, file: &ConfigFile) -> Result<(), ControlError> {
        if let Some(patch) = &file.settings {
            self.patch_settings(patch)
                .map_err(|e| ControlError(format!("settings: {e}")))?;
        }
        for (i, spec) in file.clients.iter().enumerate() {
            self.clients
                .register(spec)
                .map_err(|e| ControlError(format!("clients[{i}]: {e}")))?;
        }
        for (i, spec) in file.users.iter().enumerate() {
            self.add_user(spec)
                .map_err(|e| ControlError(format!("users[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// Back to the start state: a reset, then the config file the fake started with.
    pub(crate) fn restart(&self) -> Result<(), ControlError> {
        self.reset()
            .map_err(|e| ControlError(format!("reset failed: {e}")))?;
        let baseline = self
            .baseline
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match baseline {
            Some(file) => self.apply_config(&file),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyStore;
    use crate::model::OAuthClient;

    #[test]
    fn config_errors_are_in_plain_words_with_their_place() {
        let cases = [
            (
                r#"{"settings": {"auto_consent": tru}}"#,
                "not valid JSON at line 1 column",
            ),
            (r"{clients: []}", "keys must be in double quotes"),
            (r#"{"users": "x"}"#, "expected a list at line 1 column"),
            (
                r#"{"settings": {"auto_consent": "yes"}}"#,
                "expected true or false",
            ),
        ];
        for (json, expected) in cases {
            let err = ConfigFile::from_json(json).unwrap_err().0;
            assert!(err.contains(expected), "{json}: {err}");
            for jargon in ["ident", "sequence", "boolean", "u16", "usize"] {
                assert!(!err.contains(jargon), "{json}: {err}");
            }
        }
    }

    fn inner() -> Inner {
        Inner::new(
            OAuthClient {
                client_id: "c".into(),
                client_secret: "s".into(),
            },
            KeyStore::new().unwrap(),
        )
    }

    #[test]
    fn a_file_applies_and_a_restart_reapplies_it() {
        let file = ConfigFile::from_json(
            r#"{"clients": [{"client_id": "web-2", "client_secret": "x", "type": "web",
                 "redirect_uris": ["https://app.example/cb"]}],
                "users": [{"email": "ann@example.com", "sub": "ann", "name": "Ann Smith", "hd": "example.com"}],
                "settings": {"auto_consent": true}}"#,
        )
        .unwrap();
        let inner = inner();
        inner.apply_config(&file).unwrap();
        *inner.baseline.write().unwrap() = Some(file);
        assert!(inner.clients.known("web-2"));
        assert!(inner.settings().auto_consent);
        assert_eq!(
            inner.account_by_sub("ann").unwrap().profile.hd.as_deref(),
            Some("example.com")
        );
        inner.restart().unwrap();
        assert!(inner.clients.known("web-2"));
        assert!(inner.account_by_sub("ann").is_some());
        assert!(inner.settings().auto_consent);
    }

    #[test]
    fn errors_name_the_entry() {
        let e = ConfigFile::from_json(r#"{"clients": [{"type": "webb"}]}"#).unwrap_err();
        assert!(e.0.contains("webb"), "{e}");
        let e = ConfigFile::from_json(r#"{"user": []}"#).unwrap_err();
        assert!(e.0.contains("unknown field `user`"), "{e}");
        let file =
            ConfigFile::from_json(r#"{"users": [{"email": "a@example.com"}, {"email": "nope"}]}"#)
                .unwrap();
        let e = inner().apply_config(&file).unwrap_err();
        assert!(e.0.starts_with("users[1]: "), "{e}");
        let file =
            ConfigFile::from_json(r#"{"settings": {"code_ttl_secs": 999999999999}}"#).unwrap();
        assert!(
            inner()
                .apply_config(&file)
                .unwrap_err()
                .0
                .starts_with("settings: ")
        );
    }
}
