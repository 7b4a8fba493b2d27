//! The bindings layer: converts arguments, releases the GIL for data work, maps errors.
//! One file per pure domain, plus `errors` (every Rust-to-Python error mapping) and
//! `buffer` (the one unsafe buffer helper).

pub mod buffer;
pub mod chain;
pub mod chain_rows;
pub mod cron;
pub mod crypto;
pub mod engine;
pub mod errors;
pub mod pgpage;
pub mod reseal;
pub mod restore_into;
pub mod restore_tree;
pub mod resume;
pub mod scan;
pub mod select;
pub mod storage;
pub mod tree;
pub mod verify;
pub mod wal;
