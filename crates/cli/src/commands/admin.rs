//! Operator commands on the configured store: `users list`, `drive appfolder`, `forget`, `keys rotate`,
//! `migrate`.

use offline_access_domain::{
    AccessError, Credential, DriveRequest, DriveResponse, DriveUseError, ForgetError, StoreError,
    Subject,
};
use time::format_description::well_known::Rfc3339;

use crate::compose;
use crate::config::{Config, StoreKind};
use crate::error::{Failure, Outcome, out};

/// How many credentials are read per page.
const PAGE: usize = 500;

/// Scope URLs shown by their short name.
const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// `users list`: a table of stored users, never token values.
pub(crate) async fn users_list(config: &Config) -> Outcome {
    let keys = compose::key_ring(config)?;
    let store = compose::open_store(config, keys).await?;
    let mut credentials = Vec::new();
    let mut unreadable = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .port()
            .list(cursor.take(), PAGE)
            .await
            .map_err(store_failure)?;
        unreadable.extend(page.unreadable);
        credentials.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    credentials.sort_by(|a, b| a.subject.cmp(&b.subject));
    let rows: Vec<_> = credentials.iter().map(row).collect();
    if !unreadable.is_empty() {
        // Every readable user is still listed; the unreadable ones are named, and the exit code says so.
        if !rows.is_empty() {
            let table = table(&["SUB", "EMAIL", "CONSENT", "SCOPES", "UPDATED"], &rows);
            out!("{}", table.trim_end());
        }
        return Err(Failure::runtime(format!(
            "{} stored record(s) cannot be read (corrupt, or sealed under a key that is not configured): {}",
            unreadable.len(),
            unreadable.join("; ")
        )));
    }
    if rows.is_empty() {
        out!("no users stored in the {}", store.describe());
    } else {
        let table = table(&["SUB", "EMAIL", "CONSENT", "SCOPES", "UPDATED"], &rows);
        out!("{}", table.trim_end());
    }
    out!("# {}", config.internal_summary());
    Ok(())
}

fn row(c: &Credential) -> Vec<String> {
    let scopes: Vec<&str> = c
        .scopes
        .iter()
        .map(|s| s.strip_prefix(SCOPE_PREFIX).unwrap_or(s))
        .collect();
    let consent = if c.is_forgotten() {
        "forgotten (revocation at Google pending)".to_owned()
    } else if let Some(disabled) = &c.disabled {
        match &disabled.reason {
            Some(reason) => format!("disabled by Google ({reason})"),
            None => "disabled by Google".to_owned(),
        }
    } else if c.refresh_token.is_none() {
        format!("{} (no refresh token)", c.consent.as_str())
    } else {
        c.consent.as_str().to_owned()
    };
    vec![
        c.subject.as_str().to_owned(),
        c.profile
            .email
            .as_ref()
            .map_or_else(|| "-".to_owned(), |e| e.as_str().to_owned()),
        consent,
        if scopes.is_empty() {
            "-".to_owned()
        } else {
            scopes.join(" ")
        },
        rfc3339(c.updated_at),
    ]
}

/// A time as operator output shows it (RFC 3339).
pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Left-aligned columns separated by two spaces.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `drive appfolder --sub SUB`: Drive `files.get('appDataFolder')` with no user present.
pub(crate) async fn drive_appfolder(config: &Config, sub: &str) -> Outcome {
    let subject = compose::subject(sub)?;
    let stack = compose::configured_stack(config, false).await?;
    let response = stack
        .service
        .drive(&subject, &DriveRequest::GetAppFolder)
        .await
        .map_err(|e| drive_failure(&subject, e))?;
    match response {
        DriveResponse::Json(json) => {
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| Failure::runtime(format!("cannot print Drive's answer: {e}")))?;
            out!("{text}");
        }
        DriveResponse::Content { content_type, .. } => {
            return Err(Failure::runtime(format!(
                "Drive answered {content_type} content instead of file metadata"
            )));
        }
        DriveResponse::Empty => {
            return Err(Failure::runtime("Drive answered with no content"));
        }
    }
    Ok(())
}

/// `forget --sub SUB`: revoke at Google, delete the stored credential.
pub(crate) async fn forget(config: &Config, sub: &str) -> Outcome {
    let subject = compose::subject(sub)?;
    let stack = compose::configured_stack(config, false).await?;
    match stack.service.forget(&subject).await {
        Ok(done) if done.revoked_at_google => {
            out!("forgot {subject}: grant revoked at Google and stored credential deleted");
            Ok(())
        }
        Ok(_) => {
            out!(
                "forgot {subject}: Google could not confirm the revocation, so the credential is kept, unusable, \
                 until Google confirms it (a running server retries every 5 minutes; run forget again to retry \
                 now); the user can also remove the app's access at https://myaccount.google.com/permissions"
            );
            Ok(())
        }
        Err(ForgetError::NotFound) => Err(not_found(&subject)),
        Err(ForgetError::Store(e)) => Err(store_failure(e)),
    }
}

/// `users delete --sub SUB --yes`: deletes the stored record at its current version without opening it and
/// without calling Google (for a record under a lost key); logged at warn.
pub(crate) async fn users_delete(config: &Config, sub: &str, yes: bool) -> Outcome {
    let subject = compose::subject(sub)?;
    if !yes {
        return Err(Failure::config(format!(
            "users delete removes the stored credential of {subject} without revoking the grant at Google; add \
             --yes to confirm, or use `offline-access forget --sub {subject}` to revoke it too"
        )));
    }
    let keys = compose::key_ring(config)?;
    let store = compose::open_store(config, keys).await?;
    let port = store.port();
    for _ in 0..3 {
        let Some(version) = port.stored_version(&subject).await.map_err(store_failure)? else {
            return Err(not_found(&subject));
        };
        match port.delete(&subject, version).await {
            Ok(()) => {
                tracing::warn!(subject = %subject, "stored credential deleted by an operator without revocation at Google");
                out!(
                    "deleted the stored credential of {subject}; the grant was NOT revoked at Google (the user can \
                     remove the app's access at https://myaccount.google.com/permissions)"
                );
                return Ok(());
            }
            // Written meanwhile (a sign-in, a refresh): read the new version and delete that.
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(store_failure(e)),
        }
    }
    Err(Failure::runtime(format!(
        "the credential of {subject} kept changing while it was being deleted; try again"
    )))
}

/// `keys rotate`: re-encrypt every credential under the newest key, with a progress bar.
pub(crate) async fn keys_rotate(config: &Config) -> Outcome {
    let keys = compose::key_ring(config)?;
    let newest = keys.newest_id().to_owned();
    let store = compose::open_store(config, keys).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "re-encrypting {bar:40} {pos}/{len} credentials ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rewritten = store
        .reencrypt_all(100, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await;
    bar.finish_and_clear();
    let rewritten = rewritten.map_err(|e| match e {
        StoreError::Corrupt { subject, reason } => Failure::runtime(format!(
            "the credential of {subject} cannot be read ({reason}); if its key was removed from \
             security.encryption_keys put it back, then run `offline-access keys rotate` again"
        )),
        other => store_failure(other),
    })?;
    out!(
        "re-encrypted {rewritten} credential(s) under key `{newest}`; every credential is now sealed with it, so \
         older keys can be removed from security.encryption_keys"
    );
    Ok(())
}

/// `keys generate --id ID`: a new random key entry, for `security.encryption_keys`.
pub(crate) fn keys_generate(id: &str) -> Outcome {
    let entry = offline_access_crypto::KeyRing::generate_entry(id).map_err(|e| match e {
        offline_access_crypto::KeyError::BadId { .. } => Failure::config(format!(
            "--id {id:?} is not a valid key id; use 1 to 32 characters of A-Z, a-z, 0-9, `_` and `-`"
        )),
        other => Failure::runtime(format!("cannot generate a key: {other}")),
    })?;
    out!("{}", entry.as_str());
    Ok(())
}

/// `api-key new NAME [--json]`: a new internal API key, shown once, and its config entry (a digest only).
pub(crate) fn api_key_new(name: &str, json: bool) -> Outcome {
    let (key, entry) = offline_access_http::new_api_key(name).map_err(|e| match e {
        offline_access_http::ApiKeyError::BadName(_) => Failure::config(format!(
            "{name:?} is not a valid key name; use 1 to 64 letters, digits, `-`, `_` and `.`"
        )),
        other => Failure::runtime(format!("cannot make a key: {other}")),
    })?;
    if json {
        out!(
            "{}",
            serde_json::json!({"name": name, "key": key, "entry": entry})
        );
    } else {
        out!("API key for {name} (shown only now; give it to the service, keep it secret):");
        out!("  {key}");
        out!(
            "Add this entry to internal.api_keys (comma-separated; env OFFLINE_ACCESS_INTERNAL__API_KEYS):"
        );
        out!("  {entry}");
    }
    Ok(())
}

/// `migrate`: apply the store's schema migrations (the file store has none).
pub(crate) async fn migrate(config: &Config) -> Outcome {
    if config.store.kind == StoreKind::File {
        out!(
            "nothing to migrate: store.kind is \"file\", which has no schema; migrations apply to \
             store.kind = \"postgres\""
        );
        return Ok(());
    }
    // Migrations touch no token: any key (even a throwaway one) opens the store for them.
    let keys = match &config.security.encryption_keys {
        Some(_) => compose::key_ring(config)?,
        None => std::sync::Arc::new(offline_access_crypto::KeyRing::generate_ephemeral()),
    };
    let store = compose::open_store(config, keys).await?;
    match store.migrate().await.map_err(store_failure)? {
        Some(0) | None => out!("the schema is up to date ({})", store.describe()),
        Some(applied) => out!("applied {applied} migration(s) ({})", store.describe()),
    }
    Ok(())
}

fn not_found(subject: &Subject) -> Failure {
    Failure::runtime(format!(
        "no credential is stored for {subject}; list stored users with `offline-access users list`"
    ))
}

pub(super) fn store_failure(e: StoreError) -> Failure {
    Failure::runtime(format!("the credential store failed: {e}"))
}

fn drive_failure(subject: &Subject, e: DriveUseError) -> Failure {
    match e.clone() {
        DriveUseError::Access(AccessError::NotFound) => not_found(subject),
        DriveUseError::Access(AccessError::ReconsentRequired) => Failure::runtime(format!(
            "the grant of {subject} was revoked at Google; the user must sign in again in the app with consent"
        )),
        DriveUseError::Access(AccessError::NoOfflineAccess) => Failure::runtime(format!(
            "no refresh token is stored for {subject}; the app must request offline access again with forced consent"
        )),
        DriveUseError::Access(AccessError::Misconfigured(m)) => Failure::runtime(format!(
            "Google refused this server's client credentials ({m}); check google.client_secret_file"
        )),
        DriveUseError::Access(AccessError::Store(e)) => store_failure(e),
        DriveUseError::ScopeMissing => Failure::runtime(format!(
            "{subject} did not grant Drive appDataFolder access; the app must request the drive.appdata scope"
        )),
        DriveUseError::Unavailable | DriveUseError::Access(AccessError::UpstreamUnavailable) => {
            Failure::runtime(format!(
                "Google could not be reached for {subject} ({e}); the warning above names the host and the cause \
                 (connect, dns, tls, timeout) — check google.base_url and this host's network"
            ))
        }
        other => Failure::runtime(format!("the Drive call for {subject} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let rows = vec![
            vec!["1".to_owned(), "alice@example.com".to_owned()],
            vec!["22".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            table(&["SUB", "EMAIL"], &rows),
            "SUB  EMAIL\n1    alice@example.com\n22   -\n"
        );
    }
}
