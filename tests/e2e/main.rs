//! End-to-end tests: the offline-access server against fake-google, over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consent;
mod drive;
mod events;
mod integrity;
mod internal;
mod secrets;
mod sign_in;
