//! The `offline-access` binary, run as a process: exit codes, messages, the demo, `serve` and the operator
//! commands against an in-process fake Google.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod at_rest;
mod config;
mod crash;
mod demo;
mod events;
mod newcomer;
mod operator;
mod sandbox_page;
mod serve;
mod store_faults;
mod support;
mod tls;
