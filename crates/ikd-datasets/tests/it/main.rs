//! Integration tests of ikd-datasets: download, verification, extraction and conversion against
//! a local HTTP server on 127.0.0.1 serving archives built by the tests.

mod benchmarks;
mod common;
mod download;
