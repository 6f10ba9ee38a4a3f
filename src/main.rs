use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use rentabot::cli::{Cli, Command, ServeArgs};
use rentabot::{app, config, health_probe, telemetry, tools};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A wrong command line exits 1 (README § Command-line client, exit codes);
        // --help and --version print and succeed.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(rentabot::client::exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Some(Command::Check { file }) => check(&file),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Backup { persist, file }) => tools::backup(&persist, &file),
        Some(Command::Export { persist, format }) => tools::export(&persist, format),
        Some(Command::Import { persist, file }) => tools::import(&persist, &file),
        Some(Command::Health { url, port, timeout }) => health(url.as_deref(), port, timeout),
        None => serve(&cli.serve),
        Some(Command::Client(command)) => return ExitCode::from(rentabot::client::main(*command)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`rentabot check F | head`): it has what it wanted, and
        // there is nobody left to tell.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be gone too; there is nothing more to do then.
            let _ = writeln!(io::stderr(), "rentabot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let traces = telemetry::start(
        &args.log_level,
        args.log_format,
        args.otlp_endpoint.as_deref(),
    )?;
    let served = app::serve(args);
    // The server has stopped (SIGTERM, SIGINT, or an error) and its runtime is gone:
    // send the spans still queued.
    traces.shutdown();
    served
}

/// `rentabot health`: one line on stdout when healthy; otherwise `main` prints why and
/// exits 1.
fn health(url: Option<&str>, port: u16, timeout: u64) -> anyhow::Result<()> {
    let url = url.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
    let target = health_probe::Target::parse(&url)?;
    health_probe::probe(&target, std::time::Duration::from_secs(timeout))?;
    writeln!(io::stdout(), "{} answered 200", target.url())?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// `rentabot check FILE`: validates a descriptor and prints what it would load. Output
/// goes through `write!`, not `println!`, which panics when the reader has gone.
fn check(file: &std::path::Path) -> anyhow::Result<()> {
    let descriptor = config::load_descriptor(file)?;
    let mut err = io::stderr().lock();
    for warning in &descriptor.warnings {
        writeln!(err, "warning: {warning}")?;
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{}: {} resources",
        file.display(),
        descriptor.resources.len()
    )?;
    writeln!(out, "{:>5}  {:<24} {:>10}  tags", "id", "name", "max-lock")?;
    for (index, r) in descriptor.resources.iter().enumerate() {
        writeln!(
            out,
            "{:>5}  {:<24} {:>9}s  {}",
            index + 1,
            r.name,
            r.max_lock_duration.as_secs(),
            r.tags.join(",")
        )?;
    }
    out.flush()?;
    Ok(())
}
