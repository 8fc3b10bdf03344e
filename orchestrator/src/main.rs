//! The `smeshfleet` command.

use std::process::ExitCode;

use clap::Parser;

use orchestrator::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            let code = err.exit_code();
            if err.json {
                let obj = serde_json::json!({"ok": false, "error": {"kind": err.kind.as_str(), "message": format!("{:#}", err.source)}});
                println!("{obj}");
            }
            eprintln!("error: {:#}", err.source);
            ExitCode::from(code)
        }
    }
}
