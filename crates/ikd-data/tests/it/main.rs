//! Integration tests of ikd-data.

mod common;
mod dataset;
mod layout;
mod loader;
mod synthetic;
mod transform;
