//! HTTP adapter: the offline-access API on axum.
