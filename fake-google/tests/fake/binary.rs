//! The `fake-google` binary prints its URL once it accepts connections.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

pub(crate) struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(args: &[&str]) -> (Child, String) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fake-google"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

#[tokio::test]
async fn the_binary_prints_its_url_and_serves_it() {
    let (_child, url) = start(&["--listen", "127.0.0.1:0"]);
    assert!(url.starts_with("http://127.0.0.1:"));
    let resp = reqwest::get(format!("{url}/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_binary_with_tls_writes_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (_child, url) = start(&["--tls", "--ca-out", ca.to_str().unwrap()]);
    assert!(url.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let resp = client
        .get(format!("{url}/_fake/ca.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap(), pem);
}
