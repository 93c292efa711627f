//! `zhiban logout` — end this user's session on a shared tablet. What they made offline stays,
//! held back until they log in here again; classified documents are removed.

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
            &json!({"logged_out": true, "classified_removed": removed}),
            format!(
                "logged out; {removed} classified documents removed from this device; \
                 anything not yet sent waits here for your next login"
            ),
        )?;
        Ok(EXIT_OK)
    }
}
