//! Integration tests of the ikd engine.

mod kernel_paths;
mod trajectory;
