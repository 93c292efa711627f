//! `zhiban login --server URL --username U [--device-name NAME]`; the password comes from
//! ZHIBAN_PASSWORD, else the terminal (not echoed), else one line of stdin — never the
//! command line, where `ps` and shell history would keep it.

use clap::Args;
use serde_json::json;

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
}

impl Login {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let password = read_password()?;
        let device = context.device().await?;
        let identity = device
            .login(&self.server, &self.username, &password, &self.device_name)
            .await?;
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

fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if let Ok(password) = std::env::var("ZHIBAN_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password("password: ")?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
