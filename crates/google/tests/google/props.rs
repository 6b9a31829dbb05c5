//! Property: for generated claim sets, a token is accepted exactly when every rule holds.
