//! Tests of the service's pieces that need no run: the upload decoder under fuzzing. (End-to-end
//! tests on real runs are the `ikd` command's: `crates/ikd-cli/tests/it/serve.rs` and
//! `serve_tls.rs`.)

mod fuzz;
