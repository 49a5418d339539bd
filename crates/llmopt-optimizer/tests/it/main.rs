//! Integration tests of `llmopt-optimizer`.

mod policy;
