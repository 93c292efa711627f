//! The commands, one module each: its arguments (a `clap::Args` struct) and its effect
//! (`apply`, returning the process's exit code).

mod edit;
mod list;
mod login;
mod report;
mod run;
mod show;
mod status;

use clap::Subcommand;

use crate::Context;

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Log this device in to a Zhiban server.
    Login(login::Login),
    /// Make a report; it is saved on this device at once, then sent if the server is reachable.
    Report(report::Report),
    /// Show one document.
    Show(show::Show),
    /// List the documents on this device.
    List(list::List),
    /// The session, and which documents the server has received.
    Status(status::Status),
    /// Change a document's fields or add notes to it.
    Edit(edit::Edit),
    /// Keep syncing with the server and print what happens, until stopped.
    Run(run::Run),
}

impl Command {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        match self {
            Command::Login(command) => command.apply(context).await,
            Command::Report(command) => command.apply(context).await,
            Command::Show(command) => command.apply(context).await,
            Command::List(command) => command.apply(context).await,
            Command::Status(command) => command.apply(context).await,
            Command::Edit(command) => command.apply(context).await,
            Command::Run(command) => command.apply(context).await,
        }
    }
}

/// Parses a duration in seconds (`3`, `0.5`); used by `report --wait` and `run --for`.
pub(crate) fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is not a usable number of seconds"))
}
