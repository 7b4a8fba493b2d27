//! The one place that turns a Python buffer into a Rust slice (blake3-py's pattern).
