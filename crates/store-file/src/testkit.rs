//! The storage contract suite now lives in the crate that owns the port: `offline_access_domain::testkit`
//! (feature `testkit`). Re-exported here so existing users keep compiling; new code should use the domain's.

pub use offline_access_domain::testkit::*;
