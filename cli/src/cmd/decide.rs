//! `zhiban decide ROSTER --request N --approve|--reject` — a leader's decision on the N-th
//! swap or leave request of a roster (counted from 1, as `zhiban roster` lists them). The
//! server honours only the decisions of a leader (or admin) of the roster's unit, so nobody
//! else may write one here.

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use zhiban_client_core::{DocumentId, Error};

use super::{explain, person, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
#[group(skip)]
#[command(group(ArgGroup::new("decision").required(true).args(["approve", "reject"])))]
pub(crate) struct Decide {
    /// The roster's id, bare or as an `automerge:` URL.
    roster: DocumentId,
    /// Which request, counted from 1.
    #[arg(long, value_name = "N", value_parser = super::parse_position)]
    request: usize,
    /// Approve: the substitute takes the shift.
    #[arg(long)]
    approve: bool,
    /// Reject: nothing changes.
    #[arg(long)]
    reject: bool,
}

impl Decide {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let identity = device
            .identity()
            .await
            .ok_or(Error::NotLoggedIn)
            .map_err(explain)?;
        if !matches!(identity.role.as_str(), "leader" | "admin") {
            anyhow::bail!(
                "only a leader decides swap and leave requests; you are logged in as {}",
                identity.role
            );
        }
        let roster = record_of_kind(&device, &self.roster, "roster").await?;
        let requests = roster["requests"].as_array().map_or(&[][..], Vec::as_slice);
        let Some(request) = requests.get(self.request - 1) else {
            anyhow::bail!(
                "{} has {} request(s); there is no request {}",
                self.roster,
                requests.len(),
                self.request
            );
        };
        let status = if self.approve { "approved" } else { "rejected" };
        let human = format!(
            "request {} of {} ({} for {}) {status}",
            self.request,
            self.roster,
            request
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("swap"),
            person(&request["substitute"]),
        );
        device
            .decide_request(&self.roster, self.request - 1, self.approve)
            .await
            .map_err(explain)?;
        context.out.emit(
            &json!({ "roster": self.roster, "request": self.request, "status": status }),
            human,
        )?;
        Ok(EXIT_OK)
    }
}
