//! `zhiban login --server URL --username U [--password P] [--device-name NAME]`

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
    /// Read from ZHIBAN_PASSWORD if not given, to keep it out of shell history.
    #[arg(long, env = "ZHIBAN_PASSWORD", hide_env_values = true)]
    password: String,
    /// How this device appears in the user's list of devices.
    #[arg(long, default_value = "zhiban cli")]
    device_name: String,
}

impl Login {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let identity = device
            .login(
                &self.server,
                &self.username,
                &self.password,
                &self.device_name,
            )
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
