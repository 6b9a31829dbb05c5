//! The credential lifecycle under concurrency: the grant-integrity defects as targeted interleavings (`races`)
//! and a model-based test of random sequences against Google's truth (`model`), both in a small world of a
//! scheduled fake Google, two instances and one store (`world`).

mod broker;
mod model;
mod races;
mod world;
