//! The HTTP adapter's integration suite: the real router over the real use cases, with mocked Google ports.
//! Most tests drive the router in-process (`tower::ServiceExt::oneshot`); `server` goes through real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authcode;
mod contract;
mod drive;
mod fuzz;
mod hardening;
mod helpers;
mod me;
mod metrics_catalogue;
mod ops;
mod server;
