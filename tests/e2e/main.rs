//! End-to-end tests: the offline-access server against fake-google over real HTTP.
