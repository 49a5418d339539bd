//! `cargo xtask`: project automation in Rust, so it runs wherever cargo does.
//!
//! One module per subcommand. Commands run through `xshell::cmd!`, which quotes arguments and
//! echoes what it runs. Few dependencies (anyhow, xshell, serde_json), so it compiles in seconds.
//!
//! - `ci`: formatting, clippy, tests; `tidy`: the layering checks alone.
//! - `bench [--quick] [AREA ...] [--save NAME | --baseline NAME]`: every criterion bench, the
//!   reference comparisons, and one report (`target/bench-report.md` / `.json`).
//! - `dist [--target TRIPLE]`: release build packed into a versioned tarball with a checksum.

mod bench;
mod ci;
mod dist;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <ci|tidy|bench|dist> [args]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        bail!("{USAGE}");
    };
    match command.as_str() {
        "ci" => ci::run(&args[1..]),
        "tidy" => ci::tidy(),
        "bench" => bench::run(&args[1..]),
        "dist" => dist::run(&args[1..]),
        other => bail!("unknown xtask `{other}`: {USAGE}"),
    }
}
