//! Shared helpers for the criterion benches in `benches/benches/` (one file per area), driven
//! by `cargo xtask bench`.
