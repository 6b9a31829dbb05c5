//! Push delivery (RFC 8935): POSTs a Security Event Token to the receiver and journals each try.

use std::time::Duration;

use http::header;

use crate::model::JournalEntry;
use crate::state::Inner;

/// How long a receiver may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a receiver may take to answer a delivery.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The transmitter's HTTP client: rustls (aws-lc-rs), no proxy, no redirects, no retries.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("fake-google-risc/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .no_proxy()
        .build()
        .map_err(|e| chain(&e))
}

/// One SET to push: where, what, and what the journal says about it.
pub(crate) struct Push<'a> {
    pub(crate) url: &'a str,
    pub(crate) token: &'a str,
    pub(crate) jti: &'a str,
    pub(crate) event: &'static str,
    pub(crate) sub: Option<&'a str>,
    pub(crate) aud: &'a str,
}

/// What the receiver answered each try: its status (0 when unreachable) and the first error.
pub(crate) struct Outcome {
    pub(crate) statuses: Vec<u16>,
    pub(crate) error: Option<String>,
}

/// POSTs `push.token` to the receiver `times` times in a row (the same token each time),
/// journaling each try as a `risc_delivery`.
pub(crate) async fn deliver(inner: &Inner, push: &Push<'_>, times: u32) -> Outcome {
    let mut outcome = Outcome {
        statuses: Vec::with_capacity(times as usize),
        error: None,
    };
    for _ in 0..times {
        let (status, error) = match inner.risc.client() {
            Ok(client) => post(&client, push.url, push.token).await,
            Err(e) => (0, Some(format!("cannot build the HTTP client: {e}"))),
        };
        inner.record(JournalEntry {
            endpoint: "risc_delivery".to_owned(),
            method: "POST".to_owned(),
            path: journal_url(push.url),
            status,
            grant_type: None,
            sub: push.sub.map(str::to_owned),
            client_id: Some(push.aud.to_owned()),
            fault: None,
            event: Some(push.event.to_owned()),
            jti: Some(push.jti.to_owned()),
            error: error.clone(),
        });
        outcome.statuses.push(status);
        if outcome.error.is_none() {
            outcome.error = error;
        }
    }
    outcome
}

/// One POST: the receiver's status, or 0 and why it could not be reached.
async fn post(client: &reqwest::Client, url: &str, token: &str) -> (u16, Option<String>) {
    let sent = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/secevent+jwt")
        .header(header::ACCEPT, "application/json")
        .body(token.to_owned())
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read (and drop) the answer so the connection can be reused.
            let _ = resp.bytes().await;
            (status, None)
        }
        Err(e) if e.is_timeout() => (0, Some("the receiver did not answer in time".to_owned())),
        Err(e) => (0, Some(chain(&e.without_url()))),
    }
}

/// An error with its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The receiver URL as the journal shows it: no credentials, query or fragment.
fn journal_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_never_shows_credentials_or_queries_of_a_receiver_url() {
        assert_eq!(
            journal_url("https://u:p@example.com:8443/risc?key=secret#x"),
            "https://example.com:8443/risc"
        );
        assert_eq!(journal_url("not a url"), "");
    }
}
