//! The on-disk form of one credential: non-secret fields in clear, every token sealed with the key ring.

use offline_access_crypto::{CryptoError, KeyRing};
use offline_access_domain::{
    AccessToken, AccountDisabled, CachedAccess, ConsentState, Credential, Profile, RefreshToken,
    Scopes, Subject,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The record format written by this version.
pub(crate) const FORMAT: u32 = 1;
/// AAD purpose label of the refresh token.
pub(crate) const PURPOSE_REFRESH: &str = "refresh_token";
/// AAD purpose label of the cached access token.
pub(crate) const PURPOSE_ACCESS: &str = "access_token";

/// One user's file. Tokens are `v1.<kid>.<base64url>` strings from [`KeyRing::seal`], bound to the subject and
/// to their field.
///
/// Fields added after the first release (`access.scopes`, `disabled`, `refresh_failing_since`, `token_index`,
/// `write_id`) have serde defaults, so a file written by an earlier version reads (format stays 1: older binaries
/// ignore fields they do not know).
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) format: u32,
    pub(crate) subject: String,
    pub(crate) profile: Profile,
    pub(crate) scopes: Scopes,
    pub(crate) consent: ConsentState,
    pub(crate) version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) updated_at: OffsetDateTime,
    /// The key that sealed the tokens of this record (also inside each sealed token).
    pub(crate) key_id: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) access: Option<SealedAccess>,
    /// Set while Google has disabled the account (RISC `account-disabled`).
    #[serde(default)]
    pub(crate) disabled: Option<Disabled>,
    /// Since when refreshes keep failing with Google unavailable.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) refresh_failing_since: Option<OffsetDateTime>,
    /// The refresh token's RISC index keys ([`offline_access_domain::risc::index_keys`]: hex SHA-256 digests, never
    /// the token or its prefix): the entries this record has in `tokens/`. `Some([])` without a refresh token;
    /// absent (`None`) in a record written before the index existed.
    #[serde(default)]
    pub(crate) token_index: Option<Vec<String>>,
    /// The id of the write that stored this record when it wrote events (`outbox/tentative/<hash>` names it): the
    /// proof, after a crash, that the write landed and its events must be kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) write_id: Option<String>,
    /// The events of the write that stored this record (with `write_id`). Until the write is confirmed,
    /// `outbox/tentative/<hash>` is a second name of this very file, so they are durable with the record and need
    /// no file of their own; only the outbox reads them (a plain read skips them).
    #[serde(default, skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub(crate) events: Vec<crate::outbox::StoredEvent>,
}

/// `Credential::disabled` as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct Disabled {
    pub(crate) reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) since: OffsetDateTime,
}

/// The cached access token, sealed, with its expiry and its own scopes in clear.
#[derive(Serialize, Deserialize)]
pub(crate) struct SealedAccess {
    pub(crate) token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    /// The access token's scopes. Absent in records written before they were kept: read as the grant's scopes.
    #[serde(default)]
    pub(crate) scopes: Option<Scopes>,
}

/// The clear fields of a record, readable from any parseable file whatever its format or keys: enough to delete
/// it conditionally (and drop its index entries), to name it in a report, to answer an index lookup and to tell
/// whether a write landed.
#[derive(Deserialize)]
pub(crate) struct RecordHead {
    pub(crate) version: u64,
    #[serde(default)]
    pub(crate) subject: Option<String>,
    #[serde(default)]
    pub(crate) token_index: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) write_id: Option<String>,
}

impl RecordHead {
    /// Parses the head of a file's bytes. The error is a reason for `StoreError::Corrupt` (never file content).
    pub(crate) fn parse(bytes: &[u8]) -> Result<RecordHead, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "not a valid credential file, its version cannot be read ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })
    }
}

impl Record {
    /// Seals a credential's tokens with the newest key. `token_index` and `write_id` are left empty (`None`) for
    /// the caller to set.
    pub(crate) fn seal(credential: &Credential, keys: &KeyRing) -> Result<Record, CryptoError> {
        let subject = credential.subject.as_str();
        let refresh_token = credential
            .refresh_token
            .as_ref()
            .map(|t| keys.seal(subject, PURPOSE_REFRESH, t.expose_secret().as_bytes()))
            .transpose()?;
        let access = credential
            .access
            .as_ref()
            .map(|a| {
                Ok::<_, CryptoError>(SealedAccess {
                    token: keys.seal(
                        subject,
                        PURPOSE_ACCESS,
                        a.token.expose_secret().as_bytes(),
                    )?,
                    expires_at: a.expires_at,
                    scopes: Some(a.scopes.clone()),
                })
            })
            .transpose()?;
        Ok(Record {
            format: FORMAT,
            subject: subject.to_owned(),
            profile: credential.profile.clone(),
            scopes: credential.scopes.clone(),
            consent: credential.consent,
            version: credential.version,
            created_at: credential.created_at,
            updated_at: credential.updated_at,
            key_id: keys.newest_id().to_owned(),
            refresh_token,
            access,
            disabled: credential.disabled.as_ref().map(|d| Disabled {
                reason: d.reason.clone(),
                since: d.since,
            }),
            refresh_failing_since: credential.refresh_failing_since,
            token_index: None,
            write_id: None,
            events: Vec::new(),
        })
    }

    /// Parses a file's bytes (no decryption yet). The error is a reason for [`StoreError::Corrupt`].
    ///
    /// [`StoreError::Corrupt`]: offline_access_domain::StoreError::Corrupt
    pub(crate) fn parse(bytes: &[u8]) -> Result<Record, String> {
        let record: Record = serde_json::from_slice(bytes)
            // Category and position only: serde's message could quote file content.
            .map_err(|e| {
                format!(
                    "not a valid credential file ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                )
            })?;
        if record.format != FORMAT {
            return Err(format!("unsupported record format {}", record.format));
        }
        Ok(record)
    }

    /// The ids of every key that sealed a token of this record.
    pub(crate) fn sealing_key_ids(&self) -> impl Iterator<Item = Option<&str>> {
        self.refresh_token
            .as_deref()
            .into_iter()
            .chain(self.access.as_ref().map(|a| a.token.as_str()))
            .map(KeyRing::key_id_of)
    }

    /// Whether anything in this record is sealed under a key other than the newest.
    pub(crate) fn needs_reencryption(&self, keys: &KeyRing) -> bool {
        let newest = keys.newest_id();
        self.key_id != newest || self.sealing_key_ids().any(|kid| kid != Some(newest))
    }

    /// Decrypts the record into a credential. The error is a reason for `StoreError::Corrupt` (never secret).
    pub(crate) fn open(&self, keys: &KeyRing) -> Result<Credential, String> {
        let subject = Subject::parse(&self.subject).map_err(|_| "invalid subject".to_owned())?;
        let refresh_token = self
            .refresh_token
            .as_deref()
            .map(|sealed| {
                let plain = open_text(keys, &self.subject, PURPOSE_REFRESH, sealed)?;
                RefreshToken::parse(as_text(&plain)).map_err(|e| format!("refresh token: {e}"))
            })
            .transpose()?;
        let access = self
            .access
            .as_ref()
            .map(|a| {
                let plain = open_text(keys, &self.subject, PURPOSE_ACCESS, &a.token)?;
                let token = AccessToken::parse(as_text(&plain))
                    .map_err(|e| format!("access token: {e}"))?;
                Ok::<_, String>(CachedAccess {
                    token,
                    expires_at: a.expires_at,
                    scopes: a.scopes.clone().unwrap_or_else(|| self.scopes.clone()),
                })
            })
            .transpose()?;
        Ok(Credential {
            subject,
            profile: self.profile.clone(),
            scopes: self.scopes.clone(),
            refresh_token,
            access,
            consent: self.consent,
            disabled: self.disabled.as_ref().map(|d| AccountDisabled {
                reason: d.reason.clone(),
                since: d.since,
            }),
            refresh_failing_since: self.refresh_failing_since,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Opens one sealed token and checks it is text. The plaintext buffer is zeroized on drop; the caller parses it
/// straight into a secret newtype.
fn open_text(
    keys: &KeyRing,
    subject: &str,
    purpose: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let plain = keys
        .open(subject, purpose, sealed)
        .map_err(|e| format!("{purpose}: {e}"))?;
    if std::str::from_utf8(&plain).is_err() {
        return Err(format!("{purpose}: not UTF-8"));
    }
    Ok(plain)
}

fn as_text(plain: &[u8]) -> &str {
    // Checked by `open_text`.
    std::str::from_utf8(plain).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use offline_access_domain::{Email, Scopes};
    use proptest::prelude::*;
    use time::macros::datetime;

    fn credential(
        subject: &str,
        refresh: Option<&str>,
        access: Option<&str>,
        name: &str,
        revoked: bool,
        version: u64,
    ) -> Credential {
        let at = datetime!(2026-11-24 12:00:00.123456789 UTC);
        Credential {
            subject: Subject::parse(subject).unwrap(),
            profile: Profile {
                email: Some(Email::parse("a@example.com").unwrap()),
                name: Some(name.to_owned()),
                ..Profile::default()
            },
            scopes: Scopes::parse("openid email").unwrap(),
            refresh_token: refresh.map(|t| RefreshToken::parse(t).unwrap()),
            access: access.map(|t| CachedAccess {
                token: AccessToken::parse(t).unwrap(),
                expires_at: at + time::Duration::hours(1),
                scopes: Scopes::parse("openid").unwrap(),
            }),
            consent: if revoked {
                ConsentState::Revoked
            } else {
                ConsentState::Active
            },
            // A revoked test credential is also disabled and failing, so both shapes of each field round-trip.
            disabled: revoked.then(|| AccountDisabled {
                reason: (!name.is_empty()).then(|| name.to_owned()),
                since: at,
            }),
            refresh_failing_since: revoked.then_some(at - time::Duration::minutes(3)),
            version,
            created_at: at,
            updated_at: at,
        }
    }

    proptest! {
        /// Any credential survives seal → JSON → parse → open exactly, and no token appears in the JSON.
        #[test]
        fn any_credential_round_trips_through_the_file_format(
            subject in "[!-~]{1,64}",
            refresh in proptest::option::of("1//[!-~]{8,80}"),
            access in proptest::option::of("ya29\\.[!-~]{8,80}"),
            name in "\\PC{0,40}",
            revoked in any::<bool>(),
            version in 0u64..u64::MAX,
        ) {
            let keys = KeyRing::generate_ephemeral();
            let cred = credential(&subject, refresh.as_deref(), access.as_deref(), &name, revoked, version);
            let json = serde_json::to_vec(&Record::seal(&cred, &keys).unwrap()).unwrap();
            for token in refresh.iter().chain(access.iter()) {
                prop_assert!(!json.windows(token.len()).any(|w| w == token.as_bytes()));
            }
            let back = Record::parse(&json).unwrap().open(&keys).unwrap();
            prop_assert_eq!(back.subject, cred.subject);
            prop_assert_eq!(back.profile, cred.profile);
            prop_assert_eq!(back.refresh_token.map(|t| t.expose_secret().to_owned()), refresh);
            prop_assert_eq!(back.access.as_ref().map(|a| a.token.expose_secret().to_owned()), access);
            prop_assert_eq!(back.access.as_ref().map(|a| a.expires_at), cred.access.as_ref().map(|a| a.expires_at));
            prop_assert_eq!(back.access.map(|a| a.scopes), cred.access.map(|a| a.scopes));
            prop_assert_eq!(back.consent, cred.consent);
            prop_assert_eq!(back.disabled, cred.disabled);
            prop_assert_eq!(back.refresh_failing_since, cred.refresh_failing_since);
            prop_assert_eq!(back.version, version);
            prop_assert_eq!(back.created_at, cred.created_at);
        }

        /// Parsing arbitrary bytes never panics.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::parse(&bytes);
        }
    }

    #[test]
    fn a_record_sealed_for_one_subject_does_not_open_as_another() {
        let keys = KeyRing::generate_ephemeral();
        let mut record = Record::seal(
            &credential("alice", Some("1//r"), Some("ya29.a"), "A", false, 1),
            &keys,
        )
        .unwrap();
        record.subject = "bob".to_owned();
        let reason = record.open(&keys).unwrap_err();
        assert!(
            reason.contains("refresh_token") && reason.contains("authentication"),
            "{reason}"
        );
    }

    #[test]
    fn another_format_version_is_refused() {
        let keys = KeyRing::generate_ephemeral();
        let mut json = serde_json::to_value(
            Record::seal(&credential("a", None, None, "A", false, 1), &keys).unwrap(),
        )
        .unwrap();
        json["format"] = 2.into();
        let reason = Record::parse(&serde_json::to_vec(&json).unwrap())
            .err()
            .unwrap();
        assert!(reason.contains("format 2"), "{reason}");
    }

    #[test]
    fn a_record_of_the_previous_version_without_access_scopes_reads_the_grants_scopes() {
        let keys = KeyRing::generate_ephemeral();
        let mut json = serde_json::to_value(
            Record::seal(
                &credential("a", Some("1//r"), Some("ya29.a"), "A", false, 3),
                &keys,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(json["access"]["scopes"], serde_json::json!(["openid"]));
        json["access"].as_object_mut().unwrap().remove("scopes");
        let back = Record::parse(&serde_json::to_vec(&json).unwrap())
            .unwrap()
            .open(&keys)
            .unwrap();
        assert_eq!(
            back.access.unwrap().scopes,
            Scopes::parse("openid email").unwrap()
        );
    }

    #[test]
    fn a_record_of_the_previous_version_without_the_new_fields_reads_with_their_defaults() {
        let keys = KeyRing::generate_ephemeral();
        let mut record = Record::seal(
            &credential("a", Some("1//r"), Some("ya29.a"), "A", true, 3),
            &keys,
        )
        .unwrap();
        record.token_index = Some(vec!["ab".repeat(32)]);
        record.write_id = Some("cd".repeat(16));
        let mut json = serde_json::to_value(&record).unwrap();
        for field in [
            "disabled",
            "refresh_failing_since",
            "token_index",
            "write_id",
        ] {
            assert!(json.get(field).is_some(), "{field} is written");
            json.as_object_mut().unwrap().remove(field);
        }
        let bytes = serde_json::to_vec(&json).unwrap();
        let parsed = Record::parse(&bytes).unwrap();
        assert!(parsed.token_index.is_none() && parsed.write_id.is_none());
        let back = parsed.open(&keys).unwrap();
        assert_eq!(back.disabled, None);
        assert_eq!(back.refresh_failing_since, None);
        assert_eq!(back.version, 3);
        let head = RecordHead::parse(&bytes).unwrap();
        assert_eq!(
            (
                head.version,
                head.subject.as_deref(),
                head.token_index,
                head.write_id
            ),
            (3, Some("a"), None, None)
        );
    }

    #[test]
    fn a_record_without_events_has_no_write_id_field() {
        let keys = KeyRing::generate_ephemeral();
        let json = serde_json::to_value(
            Record::seal(&credential("a", None, None, "A", false, 1), &keys).unwrap(),
        )
        .unwrap();
        assert!(json.get("write_id").is_none());
        assert_eq!(json["disabled"], serde_json::Value::Null);
    }

    #[test]
    fn the_head_of_a_record_reads_without_its_keys_or_format() {
        let keys = KeyRing::generate_ephemeral();
        let mut json = serde_json::to_value(
            Record::seal(&credential("a", Some("1//r"), None, "A", false, 7), &keys).unwrap(),
        )
        .unwrap();
        json["format"] = 99.into();
        let bytes = serde_json::to_vec(&json).unwrap();
        assert!(Record::parse(&bytes).is_err());
        let head = RecordHead::parse(&bytes).unwrap();
        assert_eq!(head.version, 7);
        let reason = RecordHead::parse(&bytes[..bytes.len() / 2]).err().unwrap();
        assert!(reason.contains("version cannot be read"), "{reason}");
    }
}
