//! Integration tests of ikd-hrnet.

mod batch_norm;
mod common;
mod config;
mod grad;
mod hub;
mod parity;
mod resize;
mod shapes;
mod weights;
