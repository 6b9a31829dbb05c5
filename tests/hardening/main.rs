//! Hardening suite (issue 5): adversarial input, forged ID tokens, Google faults and cross-user attacks, each
//! through real HTTP against fake-google, asserting the status, the error code, what changed in the store and
//! how many calls reached Google (the fake's journal).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod canary;
mod faults;
mod id_tokens;
mod security;
