//! One module per group of commands; each function parses nothing, does the command and prints.

pub mod demo;
pub mod evaluate;
pub mod gateway;
pub mod prices;
