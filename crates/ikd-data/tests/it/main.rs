//! Integration tests of ikd-data.

mod benchmarks;
mod common;
mod dataset;
mod download;
mod layout;
mod loader;
mod synthetic;
mod transform;
