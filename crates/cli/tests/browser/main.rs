//! In a real browser (headless Chromium driven through chromedriver over WebDriver): the fake Google's account
//! chooser and consent pages, Cancel, a PKCE sign-in, and the sign-in page of `offline-access serve --sandbox` end to
//! end (its popup, `/authcode`, the user's scopes and Drive `appDataFolder`).
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them every test prints a `SKIPPED: ...` line and passes,
//! unless `CI` is set: then it fails. `OFFLINE_ACCESS_SCREENSHOTS=docs/img` (relative to the workspace root) saves
//! the screenshots shown in docs/fake-google.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod fake_pages;
mod sandbox;
