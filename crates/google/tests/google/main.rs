//! Integration tests of the Google adapter against wiremock (real HTTP on loopback) with real RS256 keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod drive;
mod fake;
mod fuzz;
mod jwks;
mod observability;
mod props;
mod proxy;
mod remembered;
mod risc;
mod risc_streams;
mod support;
mod tls;
mod tokens;
mod verify;
