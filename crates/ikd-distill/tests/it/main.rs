//! Integration tests of ikd-distill: parity with the published loss (fixtures), properties of
//! the C×C context formulation (proptest), and the behaviour of the loss, its ablations, its state
//! and the anomaly map.

mod common;
mod fixtures;
mod loss;
mod props;
