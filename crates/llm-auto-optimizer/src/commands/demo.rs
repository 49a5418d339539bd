//! `demo`: runs the demo on a runtime of its own and prints its report (text, or JSON with the
//! text on stderr).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// `demo`.
#[allow(clippy::too_many_arguments, reason = "one parameter per command-line flag")]
pub fn demo(
    requests: usize,
    baseline: usize,
    speed: f64,
    concurrency: usize,
    cycle_every: usize,
    seed: u64,
    data_dir: Option<PathBuf>,
    prompts: Option<usize>,
    json: bool,
) -> Result<()> {
    let args = llm_auto_optimizer::demo::DemoArgs {
        prompts,
        requests,
        baseline,
        speed,
        concurrency,
        seed,
        cycle_every,
        data_dir,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmopt-demo")
        .build()
        .context("cannot start the async runtime")?;
    let report = if json {
        let mut text = std::io::stderr();
        let report = runtime.block_on(llm_auto_optimizer::demo::run(&args, &mut text))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        report
    } else {
        let mut text = std::io::stdout();
        runtime.block_on(llm_auto_optimizer::demo::run(&args, &mut text))?
    };
    if report.baseline.requests == 0 {
        bail!("the demo sent no request");
    }
    Ok(())
}
