//! `demo`: runs the demo on a runtime of its own and prints its report (text, or JSON with the
//! text on stderr); with `--serve`, then keeps its gateway and dashboard up until interrupted.

use anyhow::{Context, Result, bail};
use llm_auto_optimizer::demo::{DemoArgs, run_and_keep};

/// `demo`.
pub fn demo(args: &DemoArgs, json: bool, serve: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmopt-demo")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (report, gateway) = if json {
            let mut text = std::io::stderr();
            let (report, gateway) = run_and_keep(args, &mut text).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            (report, gateway)
        } else {
            let mut text = std::io::stdout();
            run_and_keep(args, &mut text).await?
        };
        if serve {
            // On stderr with --json, so stdout stays one JSON document.
            let lines = format!(
                "\nDashboard: {}\nAdmin token (this run only): {}\nServing until interrupted (Ctrl-C).",
                gateway.dashboard_url(),
                gateway.admin_token
            );
            if json {
                eprintln!("{lines}");
            } else {
                println!("{lines}");
            }
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
        gateway.shutdown().await?;
        if report.baseline.requests == 0 {
            bail!("the demo sent no request");
        }
        Ok(())
    })
}
