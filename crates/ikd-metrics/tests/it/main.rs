//! Integration tests of ikd-metrics: parity with the reference fixtures (scikit-learn, MVTec AD's
//! evaluation code), brute-force reference implementations, properties, typed errors, and the ROC curve.

mod errors;
mod fixtures;
mod image;
mod props;
mod reference;
mod roc;
