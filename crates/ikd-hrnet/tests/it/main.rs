//! Integration tests of ikd-hrnet.

mod common;
mod config;
mod grad;
mod hub;
mod kernels;
mod parity;
mod resize;
mod shapes;
mod weights;
