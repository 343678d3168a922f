//! Work in progress.

pub mod machine;
