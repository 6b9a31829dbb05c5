//! Integration tests of fake-google over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authorize;
mod binary;
mod browser;
mod clients;
mod config;
mod control;
mod faults;
mod grants;
mod helpers;
mod info;
mod keys;
mod pkce;
mod revoke;
mod risc;
mod robustness;
mod tls;
mod token;
