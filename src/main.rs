use std::process::ExitCode;

use clap::Parser;
use rentabot::cli::{Cli, Command};
use rentabot::{app, config, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Check { file }) => check(file),
        Some(Command::Serve(args)) => {
            telemetry::init(&args.log_level).and_then(|()| app::serve(args))
        }
        None => telemetry::init(&cli.serve.log_level).and_then(|()| app::serve(&cli.serve)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rentabot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rentabot check FILE`: validates a descriptor and prints what it would load.
fn check(file: &std::path::Path) -> anyhow::Result<()> {
    let descriptor = config::load_descriptor(file)?;
    for warning in &descriptor.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}: {} resources",
        file.display(),
        descriptor.resources.len()
    );
    println!("{:>5}  {:<24} {:>10}  tags", "id", "name", "max-lock");
    for (index, r) in descriptor.resources.iter().enumerate() {
        println!(
            "{:>5}  {:<24} {:>9}s  {}",
            index + 1,
            r.name,
            r.max_lock_duration.as_secs(),
            r.tags.join(",")
        );
    }
    Ok(())
}
