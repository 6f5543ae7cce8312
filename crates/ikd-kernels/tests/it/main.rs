//! Integration tests of ikd-kernels: every kernel against candle's own ops (the same function
//! under [`ikd_kernels::KernelPolicy::candle`], or candle's op directly) and central finite
//! differences — values and gradients, across kernel sizes, strides, paddings, odd and
//! non-square sizes and batch sizes 1–3 (batch 1 splits the matrix products over threads,
//! larger batches split the images). Each test builds the policies it compares; none changes
//! anything process-wide, so they run in parallel.

mod backprop;
mod common;
mod conv;
mod elementwise;
mod norm;
mod winograd;
