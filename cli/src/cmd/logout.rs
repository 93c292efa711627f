//! `zhiban logout` — end this user's session on a shared tablet. What they made offline stays,
//! held back (and unreadable) until they log in here again; what the server holds is removed.

use clap::Args;
use serde_json::json;

use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Logout {}

impl Logout {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let removed = device.logout().await?;
        context.out.emit(
            &json!({"logged_out": true, "removed": removed}),
            format!(
                "logged out; {removed} documents the server holds removed from this device; \
                 anything not yet sent waits here for your next login"
            ),
        )?;
        Ok(EXIT_OK)
    }
}
