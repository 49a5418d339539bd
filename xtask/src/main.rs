//! `cargo xtask`: project automation in Rust, so it runs wherever cargo does.
//!
//! One module per subcommand. Commands run through `xshell::cmd!`, which quotes arguments and
//! echoes what it runs. Few dependencies, so it compiles in seconds.

mod ci;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        bail!("usage: cargo xtask <ci|tidy> [args]");
    };
    match command.as_str() {
        "ci" => ci::run(&args[1..]),
        "tidy" => ci::tidy(),
        other => bail!("unknown xtask `{other}`: expected ci or tidy"),
    }
}
