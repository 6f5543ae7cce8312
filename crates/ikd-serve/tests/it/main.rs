//! Tests of the service's pieces that need no run: the upload decoder under fuzzing, the
//! multipart bodies of the client. (End-to-end tests on real runs are the `ikd` command's:
//! `crates/ikd-cli/tests/it/serve.rs`.)

mod fuzz;
