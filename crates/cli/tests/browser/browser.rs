//! Headless Chromium through a chromedriver this test starts on a free loopback port and stops afterwards.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

/// How long any one wait in these tests may last before it fails the test (a bound, not a speed assertion).
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Looks for an executable on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Chromium and chromedriver, or why the browser tests cannot run.
fn executables() -> Result<(PathBuf, PathBuf), String> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(name));
    match (chromium, which("chromedriver")) {
        (Some(chromium), Some(driver)) => Ok((chromium, driver)),
        (chromium, driver) => Err(format!(
            "no {} on PATH; install them with `apt-get install -y chromium chromium-driver`",
            match (chromium, driver) {
                (None, None) => "chromium and chromedriver",
                (None, Some(_)) => "chromium",
                _ => "chromedriver",
            }
        )),
    }
}

/// Runs `body` with a fresh headless Chromium, then closes the browser and stops chromedriver whatever happened
/// (a failed assertion in `body` fails the test after the clean-up). Without Chromium: `SKIPPED` (or a failure
/// under `CI`).
pub(crate) async fn with_browser<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (chromium, chromedriver) = match executables() {
        Ok(found) => found,
        Err(why) => {
            let in_ci =
                std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !in_ci,
                "{test}: {why} (CI is set, so the browser tests must run)"
            );
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
            return;
        }
    };
    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let client = connect(port, &chromium).await;

    let outcome = tokio::spawn(body(client.clone())).await;

    // Clean up before reporting: the session (and with it the browser), then chromedriver.
    let _ = client.close().await;
    let _ = driver.start_kill();
    let _ = tokio::time::timeout(PATIENCE, driver.wait()).await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("{test}: the browser test was cancelled: {e}");
    }
}

/// Starts chromedriver on a free loopback port and waits until it says it is ready.
async fn start_chromedriver(chromedriver: &Path) -> (Child, u16) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = format!("http://127.0.0.1:{port}/status");
    eventually("chromedriver to be ready", || {
        let http = http.clone();
        let status = status.clone();
        async move {
            let answer = http.get(&status).send().await.ok()?;
            let body: serde_json::Value = answer.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        }
    })
    .await;
    (driver, port)
}

/// A WebDriver session with headless Chromium: no proxy (everything is on loopback), a fixed window size.
async fn connect(port: u16, chromium: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "chrome".into());
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-proxy-server",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-sync",
                "--window-size=800,720",
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session through chromedriver: {e}"))
}

/// Polls `probe` until it answers `Some`, for at most [`PATIENCE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for an element to be there.
pub(crate) async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
}

/// Waits for the button whose text is exactly `text`.
pub(crate) async fn button(client: &Client, text: &str) -> fantoccini::elements::Element {
    let xpath = format!("//button[normalize-space()='{text}']");
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no button {text:?}: {e}"))
}

/// Waits until the page's title is `title`.
pub(crate) async fn wait_for_title(client: &Client, title: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen = client.title().await;
        if seen.as_deref().is_ok_and(|seen| seen == title) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let url = client.current_url().await;
            let source = client.source().await.unwrap_or_default();
            panic!(
                "gave up waiting for the page titled {title:?}: the title is {seen:?} at {url:?}; the page:\n{source}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the current URL starts with `prefix`, and returns it.
pub(crate) async fn wait_for_url(client: &Client, prefix: &str) -> url::Url {
    eventually(&format!("a URL starting with {prefix}"), || async {
        let url = client.current_url().await.ok()?;
        url.as_str().starts_with(prefix).then_some(url)
    })
    .await
}

/// The text of every element matching `css`, in document order.
pub(crate) async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap());
    }
    out
}

/// With `OFFLINE_ACCESS_SCREENSHOTS=DIR` (relative to the workspace root), saves the page as `DIR/NAME.png`.
pub(crate) async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("OFFLINE_ACCESS_SCREENSHOTS") else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The whole page, no scroll bars: the window as tall as the document (plus the window's own frame).
    let size = client
        .execute(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .unwrap();
    let height = size[0].as_u64().unwrap() + size[1].as_u64().unwrap();
    client
        .set_window_size(800, u32::try_from(height).unwrap())
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("saved {}", path.display());
}
