//! `fake-google --config FILE.json`: clients, users and settings at start, and clear errors
//! (exit status 2) naming what is wrong in the file.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::binary::start;

fn write(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("fake.json");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs the binary with a config that must be refused: its exit status and stderr.
fn refused(path: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-google"))
        .args(["--config", path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A started fake would print its URL and keep running: fail instead of waiting for it.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the fake started with {path}: {line}");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap(), stderr)
}

#[tokio::test]
async fn a_config_file_sets_clients_users_and_settings_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        &json!({
            "clients": [{"client_id": "cfg-web.apps.googleusercontent.com", "client_secret": "GOCSPX-cfg",
                          "type": "web", "redirect_uris": ["https://app.example/cb", "postmessage"]},
                        {"type": "installed"}],
            "users": [{"email": "ada@example.com", "sub": "100000000000000000001", "name": "Ada Lovelace",
                       "given_name": "Ada", "family_name": "Lovelace", "picture": "https://example.com/ada.png",
                       "locale": "en-GB", "email_verified": true, "hd": "example.com"},
                      {"email": "bob@example.com"}],
            "settings": {"auto_consent": false, "access_token_ttl_secs": 120}
        })
        .to_string(),
    );
    let (_child, url) = start(&["--config", &path]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let settings: Value = http
        .get(format!("{url}/_fake/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["access_token_ttl_secs"], 120);
    let chooser = http
        .get(format!(
            "{url}/o/oauth2/v2/auth?client_id=cfg-web.apps.googleusercontent.com&redirect_uri=https://app.example/cb&response_type=code&scope=openid"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(chooser.status(), 200);
    let html = chooser.text().await.unwrap();
    assert!(
        html.contains("value=\"100000000000000000001\">ada@example.com</button>"),
        "{html}"
    );
    assert!(html.contains(">bob@example.com</button>"));
    assert!(html.contains("Ada Lovelace"));
    // The config user signs in silently once granted; its profile reaches the ID token.
    let code: Value = http
        .post(format!("{url}/_fake/codes"))
        .json(
            &json!({"email": "ada@example.com", "sub": "100000000000000000001",
                      "client_id": "cfg-web.apps.googleusercontent.com", "scopes": "openid profile",
                      "name": "Ada Lovelace"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = http
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code["code"].as_str().unwrap()),
            ("client_id", "cfg-web.apps.googleusercontent.com"),
            ("client_secret", "GOCSPX-cfg"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 120);
    // A reset returns to the config's start state, not to an empty fake.
    let reset = http
        .post(format!("{url}/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    let settings: Value = http
        .get(format!("{url}/_fake/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["access_token_ttl_secs"], 120);
    let file = http
        .get(format!(
            "{url}/_fake/client_secret.json?client_id=cfg-web.apps.googleusercontent.com"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
}

#[test]
fn a_bad_config_file_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    for (body, needles) in [
        ("{not json", vec!["fake.json", "line 1"]),
        (
            r#"{"clients": [], "colour": 1}"#,
            vec!["unknown field `colour`"],
        ),
        (
            r#"{"clients": [{"type": "desktop"}]}"#,
            vec!["desktop", "web"],
        ),
        (
            r#"{"clients": [{"type": "web", "redirect_uris": ["https://a.example/#f"]}]}"#,
            vec!["clients[0]", "redirect_uris[0]", "fragment"],
        ),
        (
            r#"{"users": [{"email": "a@example.com"}, {"email": "not-an-email"}]}"#,
            vec!["users[1]", "not-an-email"],
        ),
        (
            r#"{"settings": {"code_ttl_secs": 99999999999}}"#,
            vec!["settings", "code_ttl_secs"],
        ),
    ] {
        let path = write(&dir, body);
        let (code, stderr) = refused(&path);
        assert_eq!(code, 2, "{body}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{body}: {n:?} not in {stderr}");
        }
    }
    let missing = dir.path().join("missing.json");
    let (code, stderr) = refused(missing.to_str().unwrap());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("missing.json") && stderr.contains("cannot read"),
        "{stderr}"
    );
}
