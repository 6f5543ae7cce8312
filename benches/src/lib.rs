//! Criterion benches of the ikd workspace live in `benches/`; this library is empty.
