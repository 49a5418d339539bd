//! Integration tests of `llmopt-experiments`: one binary, one module per area.

mod assignment;
mod decisions;
mod heavy_tails;
mod incomplete;
mod lifecycle;
mod reference;
mod simulation;
mod support;
