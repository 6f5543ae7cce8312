//! Integration tests of the ikd engine.

mod trajectory;
