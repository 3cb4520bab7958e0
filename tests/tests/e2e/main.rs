//! End-to-end tests: the real `ledger` binary on real directories.

mod bad_input;
mod cli;
mod crash;
mod projections;
mod spec;
mod tamper;
