//! Integration tests of fake-google over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod control;
mod faults;
mod grants;
mod helpers;
mod info;
mod keys;
mod revoke;
mod robustness;
mod tls;
mod token;
