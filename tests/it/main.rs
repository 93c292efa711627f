//! The one integration test binary: the real server on port 0 with a fresh SQLite file per
//! test, driven by raw protocol peers, the stock JavaScript automerge-repo client and samod.
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod accounts;
mod alerts;
mod auth;
mod bad_input;
mod cli;
mod cli_alerts;
mod cli_day;
mod codebase;
mod commit;
mod device;
mod durability;
#[path = "../support/flaky_proxy.rs"]
mod flaky_proxy;
mod fuzz_corpora;
mod helpers;
mod hostile;
mod interop;
#[path = "../support/js_peer.rs"]
mod js_peer;
mod keys;
mod kpis;
mod push_api;
mod push_receiver;
#[path = "../support/push_receiver.rs"]
mod push_receiver_support;
mod record_times;
mod records;
mod relay;
#[path = "../support/samod_peer.rs"]
mod samod_peer;
mod tls;
mod web;
mod write_policy;
