//! Integration tests of `cargo xtask`: `reproduce` end to end offline (a local HTTP server for the
//! dataset, a local Hugging Face cache for the weights), its report, and the demo. (The report's
//! rendering in headless Chromium is tested in ikd-report.)

mod demo;
mod fixture;
mod gpu_bundle;
mod reproduce;
mod speed;
