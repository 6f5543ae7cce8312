//! Integration tests of `cargo xtask`: `reproduce` end to end offline (a local HTTP server for the
//! dataset, a local Hugging Face cache for the weights), and the report rendered in headless
//! Chromium.

mod demo;
mod fixture;
mod render;
mod reproduce;
mod speed;
