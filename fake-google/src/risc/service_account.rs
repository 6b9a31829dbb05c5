//! `POST /_fake/service-accounts`: a Google service-account key file, so that a RISC client can
//! sign the Bearer JWT of the RISC API as it would for Google.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::model::ControlError;

/// The project of a key file when the request names none.
pub(crate) const DEFAULT_PROJECT: &str = "fake-google-project";

/// `POST /_fake/service-accounts`, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRequest {
    /// Default [`DEFAULT_PROJECT`].
    #[serde(default)]
    project_id: Option<String>,
    /// Default `risc-admin@{project_id}.iam.gserviceaccount.com`.
    #[serde(default)]
    client_email: Option<String>,
}

/// A key file in Google's field order.
#[derive(Serialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: &'static str,
    project_id: String,
    private_key_id: String,
    private_key: String,
    client_email: String,
    client_id: String,
    auth_uri: String,
    token_uri: String,
    auth_provider_x509_cert_url: String,
    client_x509_cert_url: String,
    universe_domain: &'static str,
}

/// The key file for `req`, its URLs at `base`. The private key is a fixed test key (see
/// [`crate::keys::service_account_der`]); `private_key_id` is the SHA-1 of its DER in hex.
pub(crate) fn key_file(base: &str, req: &KeyRequest) -> Result<serde_json::Value, ControlError> {
    let project_id = req.project_id.as_deref().unwrap_or(DEFAULT_PROJECT);
    let valid_project = (1..=64).contains(&project_id.len())
        && project_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_project {
        return Err(ControlError(
            "project_id must be 1 to 64 lowercase letters, digits or '-'".to_owned(),
        ));
    }
    let client_email = match &req.client_email {
        Some(e) => e.clone(),
        None => format!("risc-admin@{project_id}.iam.gserviceaccount.com"),
    };
    if !crate::users::is_email(&client_email) {
        return Err(ControlError(format!(
            "client_email {client_email:?} is not an e-mail address"
        )));
    }
    let der = crate::keys::service_account_der();
    let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let file = KeyFile {
        kind: "service_account",
        project_id: project_id.to_owned(),
        private_key_id: hex::encode(key_id.as_ref()),
        private_key: pem("PRIVATE KEY", der),
        client_id: crate::state::derived_sub(&client_email),
        auth_uri: format!("{base}/o/oauth2/auth"),
        token_uri: format!("{base}/token"),
        auth_provider_x509_cert_url: format!("{base}/oauth2/v1/certs"),
        client_x509_cert_url: format!(
            "{base}/robot/v1/metadata/x509/{}",
            percent_encoding::utf8_percent_encode(
                &client_email,
                percent_encoding::NON_ALPHANUMERIC
            )
        ),
        client_email,
        universe_domain: "googleapis.com",
    };
    serde_json::to_value(file).map_err(|e| ControlError(format!("key file: {e}")))
}

/// PEM armour: base64 in lines of 64 characters, each line ending in `\n`.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_has_googles_fields_and_a_pkcs8_pem_key() {
        let file = key_file("http://127.0.0.1:1", &KeyRequest::default()).unwrap();
        assert_eq!(file["type"], "service_account");
        assert_eq!(file["project_id"], DEFAULT_PROJECT);
        assert_eq!(
            file["client_email"],
            "risc-admin@fake-google-project.iam.gserviceaccount.com"
        );
        assert_eq!(file["token_uri"], "http://127.0.0.1:1/token");
        assert_eq!(file["private_key_id"].as_str().unwrap().len(), 40);
        assert_eq!(file["client_id"].as_str().unwrap().len(), 21);
        let pem = file["private_key"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn bad_project_ids_and_emails_are_refused() {
        let bad = KeyRequest {
            project_id: Some("Bad Project".into()),
            client_email: None,
        };
        assert!(key_file("b", &bad).unwrap_err().0.contains("project_id"));
        let bad = KeyRequest {
            project_id: None,
            client_email: Some("nope".into()),
        };
        assert!(key_file("b", &bad).unwrap_err().0.contains("client_email"));
    }
}
