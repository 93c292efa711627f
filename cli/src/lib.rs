//! `zhiban`: the command line a field tablet runs, on top of `zhiban-client-core`.
//!
//! ```text
//! zhiban [--data-dir DIR] [--json] <command>
//! ```
//!
//! Each command lives in its own module under [`cmd`], owning its arguments and its effect.
//! Everything works offline against the device's own store; only `login`, `run`, the
//! delivery attempt of `report`, and what lives on the server alone (`search`, `on-duty`,
//! `alerts`, `ack`, `rollcall`) talk to the server. Two data directories are two devices.
//!
//! Output goes to stdout, one line at a time and flushed at once (scripts and tests read it
//! live); with `--json` every line is one JSON object. Logs go to stderr (filter from
//! `ZHIBAN_LOG`, default `warn`). Exit codes: 0 success, 1 failure, 2 usage error, 3 the
//! device was revoked (from `run`).

mod cmd;
mod output;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use zhiban_client_core::{DeliveryStatus, Device};

use cmd::Command;
use output::Output;

#[derive(Parser, Debug)]
#[command(
    name = "zhiban",
    bin_name = "zhiban",
    version,
    about = "Zhiban for field tablets: reports and duty records that work offline and sync when they can"
)]
struct Cli {
    /// The device's data directory (one directory = one device).
    #[arg(
        long,
        env = "ZHIBAN_DATA_DIR",
        default_value = "./zhiban-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Print one JSON object per stdout line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// What a command needs: where the device lives and how to speak.
pub(crate) struct Context {
    pub data_dir: PathBuf,
    pub out: Output,
}

impl Context {
    /// Opens (or creates) the device in the data directory.
    pub async fn device(&self) -> anyhow::Result<Device> {
        Device::open(&self.data_dir).await.with_context(|| {
            format!(
                "cannot open the device store in {}",
                self.data_dir.display()
            )
        })
    }
}

/// A mistake in how the command was called (exit code 2, as clap's own usage errors).
#[derive(Debug)]
pub(crate) struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Exit codes.
pub(crate) const EXIT_OK: i32 = 0;
pub(crate) const EXIT_FAILURE: i32 = 1;
pub(crate) const EXIT_USAGE: i32 = 2;
pub(crate) const EXIT_REVOKED: i32 = 3;

/// Entry point of the `zhiban` binary: parses the command line, runs the command on a tokio
/// runtime and exits with its code.
pub fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" printed to stdout with exit code 0.
            if error.use_stderr() && wants_json(&args) {
                // The message is what comes before the usage: "error: ...\n  --arg\n\nUsage:".
                let rendered = error.render().to_string();
                let message = rendered.split("\n\n").next().unwrap_or_default();
                let message = message.strip_prefix("error: ").unwrap_or(message);
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                Output::new(true).error(&message);
            }
            error.exit();
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zhiban: cannot start the tokio runtime: {error}");
            std::process::exit(EXIT_FAILURE);
        }
    };
    let context = Context {
        data_dir: cli.data_dir,
        out: Output::new(cli.json),
    };
    let code = match runtime.block_on(cli.command.apply(&context)) {
        Ok(code) => code,
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!("zhiban: {message}");
            context.out.error(&message);
            if error.downcast_ref::<Usage>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            }
        }
    };
    // Background tasks (a sync being stopped, the store's pool) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    std::process::exit(code);
}

/// Whether `--json` was given, for reporting a command line clap could not parse.
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .any(|arg| arg == "--json")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZHIBAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// How a delivery status reads to a person.
pub(crate) fn status_words(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::SavedOnDevice => "saved on this device",
        DeliveryStatus::ReceivedByServer => "received by the server",
    }
}
