//! `zhiban login --server URL --username U [--device-name NAME] [--ca FILE]`; the password
//! comes from ZHIBAN_PASSWORD, else the terminal (not echoed), else one line of stdin — never
//! the command line, where `ps` and shell history would keep it. A password an admin set must
//! be replaced at this login: the new one comes from ZHIBAN_NEW_PASSWORD, the terminal or the
//! next line of stdin. `--ca` names the PEM file of
//! an office's own CA for an `https` server whose certificate it issued; the device keeps
//! trusting it for every later command.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use zhiban_client_core::LoginOptions;

use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Login {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    #[arg(long)]
    username: String,
    /// How this device appears in the user's list of devices.
    #[arg(long, default_value = "zhiban cli")]
    device_name: String,
    /// A CA certificate (PEM) to trust besides the system's, for a server whose certificate
    /// your office's own CA issued; kept on this device for later commands.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl Login {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        // Read before the password is asked for: a wrong path should not cost typing it.
        let ca_pem = match &self.ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read the CA file {}", path.display()))?,
            ),
            None => None,
        };
        let password = read_password("ZHIBAN_PASSWORD", "password: ")?;
        let device = context.device().await?;
        let mut options = LoginOptions {
            ca_pem,
            new_password: None,
        };
        let identity = loop {
            let login = device.login_with(
                &self.server,
                &self.username,
                &password,
                &self.device_name,
                &options,
            );
            match login.await {
                // An admin set this password: the user sets their own now, in the same login.
                Err(zhiban_client_core::Error::PasswordChangeRequired)
                    if options.new_password.is_none() =>
                {
                    options.new_password = Some(read_password(
                        "ZHIBAN_NEW_PASSWORD",
                        "new password (yours): ",
                    )?);
                }
                other => break other?,
            }
        };
        context.out.emit(
            &json!({
                "user_id": identity.user_id,
                "device_id": identity.device_id,
                "unit_id": identity.unit_id,
                "peer_id": identity.peer_id,
                "role": identity.role,
                "cleared": identity.cleared,
            }),
            format_args!(
                "logged in to {} as {} ({}{}) in unit {}; this device is {}",
                identity.server_url,
                self.username,
                identity.role,
                if identity.cleared { ", cleared" } else { "" },
                identity.unit_id,
                identity.device_id,
            ),
        )?;
        Ok(EXIT_OK)
    }
}

/// From the environment variable `variable`, else the terminal (not echoed), else the next
/// line of stdin (the password, then the new one, when a script pipes both).
fn read_password(variable: &str, prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if let Ok(password) = std::env::var(variable) {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(prompt)?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
