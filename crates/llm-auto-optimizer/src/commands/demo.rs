//! `demo`: runs the demo on a runtime of its own and prints its report (text, or JSON with the
//! text on stderr).

use anyhow::{Context, Result, bail};
use llm_auto_optimizer::demo::DemoArgs;

/// `demo`.
pub fn demo(args: &DemoArgs, json: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmopt-demo")
        .build()
        .context("cannot start the async runtime")?;
    let report = if json {
        let mut text = std::io::stderr();
        let report = runtime.block_on(llm_auto_optimizer::demo::run(args, &mut text))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        report
    } else {
        let mut text = std::io::stdout();
        runtime.block_on(llm_auto_optimizer::demo::run(args, &mut text))?
    };
    if report.baseline.requests == 0 {
        bail!("the demo sent no request");
    }
    Ok(())
}
