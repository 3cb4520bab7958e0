//! End-to-end tests: the real `ledger` binary on real directories.

mod answers;
mod bad_input;
mod channels;
mod cli;
mod crash;
mod demo;
mod operations;
mod postgres;
mod projections;
mod server;
mod spec;
mod tamper;
mod witness;
