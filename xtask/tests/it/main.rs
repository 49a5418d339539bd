//! Repository checks that run under `cargo test`: the architecture rules of DESIGN.md (`tidy`)
//! and the consistency of the deployment files with the binary (`deploy`).

mod deploy;
mod tidy;
