//! `zhiban swap ROSTER --shift N [--leave] --substitute-name NAME [--substitute-id USER_ID]
//! [--substitute-phone P] --reason R`
//!
//! Asks for a swap (or with `--leave`, a leave) on the N-th shift of a roster, counted from 1
//! as `zhiban roster` lists them. Nobody leaves the post without a named substitute (D4), and
//! the request takes effect only once a leader of the unit approves it (`zhiban decide`).

use clap::Args;
use serde_json::{Value, json};
use zhiban_client_core::{DocumentId, Error};

use super::{explain, non_empty, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Swap {
    /// The roster's id, bare or as an `automerge:` URL.
    roster: DocumentId,
    /// Which shift, counted from 1.
    #[arg(long, value_name = "N", value_parser = super::parse_position)]
    shift: usize,
    /// A leave rather than a swap.
    #[arg(long)]
    leave: bool,
    /// Who takes the shift over.
    #[arg(long, value_name = "NAME")]
    substitute_name: String,
    /// The substitute's user id, if they have an account.
    #[arg(long, value_name = "USER_ID")]
    substitute_id: Option<String>,
    /// How to reach the substitute.
    #[arg(long, value_name = "PHONE")]
    substitute_phone: Option<String>,
    /// Why.
    #[arg(long)]
    reason: String,
}

impl Swap {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        non_empty(&self.substitute_name, "the substitute's name")?;
        non_empty(&self.reason, "the reason")?;
        if let Some(phone) = &self.substitute_phone
            && !zhiban_records::valid_phone(phone)
        {
            return Err(Error::Invalid(format!("`{phone}` is not a phone number")).into());
        }
        let device = context.device().await?;
        let me = device
            .identity()
            .await
            .ok_or(Error::NotLoggedIn)
            .map_err(explain)?
            .user_id;
        let roster = record_of_kind(&device, &self.roster, "roster").await?;
        let shifts = roster["shifts"].as_array().map_or(&[][..], Vec::as_slice);
        let Some(shift) = shifts.get(self.shift - 1) else {
            anyhow::bail!(
                "{} has {} shift(s); there is no shift {}",
                self.roster,
                shifts.len(),
                self.shift
            );
        };
        // The server puts the substitute in the requester's place: a request by somebody who
        // is not on the shift would never change who is on duty.
        let on_shift = std::iter::once(&shift["leader"])
            .chain(shift["officers"].as_array().into_iter().flatten())
            .any(|person| person.get("user_id").and_then(Value::as_str) == Some(me.as_str()));
        if !on_shift {
            anyhow::bail!(
                "you are not on duty in shift {} of {}; only the leader or an officer of the \
                 shift can ask to swap or leave it",
                self.shift,
                self.roster
            );
        }
        let substitute = json!({
            "user_id": self.substitute_id,
            "name": self.substitute_name,
            "phone": self.substitute_phone,
        });
        device
            .request_swap(
                &self.roster,
                self.shift - 1,
                self.leave,
                &substitute,
                &self.reason,
            )
            .await
            .map_err(explain)?;
        // Its number as this device sees it: the last request.
        let request = device.get(&self.roster).await.map_err(explain)?["requests"]
            .as_array()
            .map_or(0, Vec::len);
        let kind = if self.leave { "leave" } else { "swap" };
        context.out.emit(
            &json!({ "roster": self.roster, "request": request }),
            format_args!(
                "{kind} request {request} on shift {} of {}: pending until a leader decides",
                self.shift, self.roster
            ),
        )?;
        Ok(EXIT_OK)
    }
}
