//! `evolve`: train a text-to-image model from better models' outputs, curated online by a judge.
//!
//! This file is the binary's edge: argument parsing, logging, and turning errors into messages
//! and exit codes. Each command lives in its own module under `cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("EVOLVE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file or a CI log gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", cli::render_error(&error));
            ExitCode::from(1)
        }
    }
}
