//! A duty officer's day on the device (D4, D6, D7, D12, D14): calls logged into the shift's
//! duty log, reports added to an incident's chain, handovers with their pending items, swap
//! and leave requests and their approval — all offline-first edits of documents, plus the two
//! questions only the server can answer (search, who is on duty).

use serde_json::{Value, json};
use zhiban_protocol::DocumentId;

use crate::{Device, Error};

/// A call or message to log (D6).
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The caller's unit.
    pub caller_unit: Option<String>,
    /// The caller's name.
    pub caller_name: Option<String>,
    /// The caller's phone number.
    pub phone: Option<String>,
    /// What was said.
    pub content: String,
    /// How it was handled.
    pub handling: Option<String>,
    /// The incident this call belongs to, if any ("one case, one file").
    pub incident: Option<DocumentId>,
}

/// Which report of an incident's chain (D11–D12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// The first report.
    First,
    /// A follow-up report (due every 2 hours until the final one).
    FollowUp,
    /// The final report, which closes the incident.
    Final,
}

impl ReportKind {
    fn as_str(self) -> &'static str {
        match self {
            ReportKind::First => "first",
            ReportKind::FollowUp => "follow_up",
            ReportKind::Final => "final",
        }
    }
}

impl Device {
    async fn user_id(&self) -> Result<String, Error> {
        Ok(self.identity().await.ok_or(Error::NotLoggedIn)?.user_id)
    }

    /// The document as JSON, if it is a record of `kind`.
    async fn record_of(&self, id: &DocumentId, kind: &str) -> Result<Value, Error> {
        let document = self.get(id).await?;
        if document.get("type").and_then(Value::as_str) != Some(kind) {
            return Err(Error::Invalid(format!("{id} is not a {kind}")));
        }
        Ok(document)
    }

    /// Logs a call in today's duty log on this device (created on first use), checked like
    /// every record. Returns the duty log's id.
    pub async fn log_call(&self, call: Call) -> Result<DocumentId, Error> {
        let handler = self.user_id().await?;
        if call.content.trim().is_empty() {
            return Err(Error::Invalid("a logged call needs its content".into()));
        }
        if let Some(phone) = &call.phone
            && !zhiban_records::valid_phone(phone)
        {
            return Err(Error::Invalid(format!("`{phone}` is not a phone number")));
        }
        let date = chrono::Local::now().format("%Y-%m-%d").to_string();
        let key = format!("duty_log:{date}");
        let existing = self.inner.store.setting(&key).await?;
        let log = match existing.and_then(|id| id.parse::<DocumentId>().ok()) {
            Some(id) if self.get(&id).await.is_ok() => id,
            _ => {
                let (id, _) = self
                    .create_record(&json!({
                        "type": "duty_log", "schema": zhiban_records::SCHEMA,
                        "title": format!("Duty log {date}"), "shift_start": crate::now_ms(), "entries": [],
                    }))
                    .await?;
                self.inner.store.set_setting(&key, &id.to_string()).await?;
                id
            }
        };
        let entry = json!({
            "received_at": crate::now_ms(), "caller_unit": call.caller_unit, "caller_name": call.caller_name,
            "phone": call.phone, "content": call.content, "handling": call.handling,
            "handler": handler, "incident": call.incident.map(|id| id.to_string()),
        });
        self.append(&log, &["entries"], &entry).await?;
        Ok(log)
    }

    /// Adds a report to an incident's chain; a final report also closes it.
    pub async fn add_report(
        &self,
        incident: &DocumentId,
        kind: ReportKind,
        text: &str,
    ) -> Result<(), Error> {
        let by = self.user_id().await?;
        if kind == ReportKind::Final
            && let Some(zhiban_records::Record::Incident(existing)) =
                self.check(incident).await?.record
            && existing.final_report_at().is_some()
        {
            return Err(Error::Invalid(
                "the incident already has its final report".into(),
            ));
        }
        let report = json!({"kind": kind.as_str(), "at": crate::now_ms(), "by": by, "text": text});
        self.append(incident, &["reports"], &report).await?;
        if kind == ReportKind::Final {
            self.set_field(incident, &["status"], &json!("closed"))
                .await?;
        }
        Ok(())
    }

    /// Records a leader's instruction (批示) on an incident (D14).
    pub async fn add_instruction(&self, incident: &DocumentId, text: &str) -> Result<(), Error> {
        self.add_instruction_to(incident, text, None).await
    }

    /// A leader's instruction addressed to `to` (a user id): the server alerts them until they
    /// acknowledge it (D14, D23). Only leaders (of the unit or an office above) give them.
    pub async fn add_instruction_to(
        &self,
        incident: &DocumentId,
        text: &str,
        to: Option<&str>,
    ) -> Result<(), Error> {
        let identity = self.identity().await.ok_or(Error::NotLoggedIn)?;
        self.record_of(incident, "incident").await?;
        if text.trim().is_empty() {
            return Err(Error::Invalid("an instruction needs its text".into()));
        }
        // The server would refuse it (rule W5); saying so now beats a change that never goes.
        if identity.role != zhiban_api::Role::Leader {
            return Err(Error::Invalid(
                "only a leader gives instructions (rule W5)".into(),
            ));
        }
        let by = identity.user_id;
        let instruction = json!({"by": by, "to": to, "at": crate::now_ms(), "text": text, "steps": [], "done": false});
        self.append(incident, &["instructions"], &instruction).await
    }

    /// Opens a handover for the end of this shift (D7): done items, equipment state, and the
    /// pending items, including every item still open in `previous` (they stay open until
    /// somebody closes them).
    pub async fn create_handover(
        &self,
        done: &[String],
        pending: &[String],
        equipment: &str,
        previous: Option<&DocumentId>,
    ) -> Result<DocumentId, Error> {
        let by = self.user_id().await?;
        let at = crate::now_ms();
        let mut items: Vec<Value> = Vec::new();
        if let Some(previous) = previous {
            let earlier = self.get(previous).await?;
            for item in earlier["pending"].as_array().into_iter().flatten() {
                if item["closed_at"].is_null() {
                    items.push(item.clone());
                }
            }
        }
        items.extend(pending.iter().map(|text| {
            json!({"text": text, "opened_at": at, "opened_by": by, "closed_at": null, "closed_by": null})
        }));
        let (id, _) = self
            .create_record(&json!({
                "type": "handover", "schema": zhiban_records::SCHEMA,
                "title": format!("Handover {}", chrono::Local::now().format("%Y-%m-%d %H:%M")),
                "done": done, "pending": items, "equipment": equipment,
                "previous": previous.map(|id| id.to_string()),
                "signatures": {"outgoing": null, "incoming": null},
            }))
            .await?;
        Ok(id)
    }

    /// Signs a handover as the outgoing or the incoming officer.
    pub async fn sign_handover(&self, handover: &DocumentId, incoming: bool) -> Result<(), Error> {
        let by = self.user_id().await?;
        let side = if incoming { "incoming" } else { "outgoing" };
        let document = self.record_of(handover, "handover").await?;
        if !document["signatures"][side].is_null() {
            return Err(Error::Invalid(format!(
                "the {side} side has already signed"
            )));
        }
        self.set_field(
            handover,
            &["signatures", side],
            &json!({"by": by, "at": crate::now_ms()}),
        )
        .await
    }

    /// Closes a pending item of a handover (by its position in `pending`).
    pub async fn close_pending(&self, handover: &DocumentId, position: usize) -> Result<(), Error> {
        let by = self.user_id().await?;
        let document = self.record_of(handover, "handover").await?;
        match document["pending"].get(position) {
            None => {
                return Err(Error::Invalid(format!(
                    "the handover has no pending item {}",
                    position + 1
                )));
            }
            Some(item) if !item["closed_at"].is_null() => {
                return Err(Error::Invalid(format!(
                    "pending item {} is already closed",
                    position + 1
                )));
            }
            Some(_) => {}
        }
        self.change(handover, move |tx| {
            use automerge::ReadDoc;
            use automerge::transaction::Transactable;
            let pending = match tx.get(automerge::ROOT, "pending")? {
                Some((_, list)) => list,
                None => return Err(automerge::AutomergeError::InvalidIndex(position)),
            };
            let item = match tx.get(&pending, position)? {
                Some((_, item)) => item,
                None => return Err(automerge::AutomergeError::InvalidIndex(position)),
            };
            tx.put(&item, "closed_at", crate::now_ms())?;
            tx.put(&item, "closed_by", by.as_str())?;
            Ok(())
        })
        .await
    }

    /// Asks for a swap or leave on a roster's shift, naming the substitute (D4).
    pub async fn request_swap(
        &self,
        roster: &DocumentId,
        shift: usize,
        leave: bool,
        substitute: &Value,
        reason: &str,
    ) -> Result<(), Error> {
        let requester = self.user_id().await?;
        if substitute
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Error::Invalid(
                "a request needs a named substitute (D4)".into(),
            ));
        }
        let request = json!({
            "kind": if leave { "leave" } else { "swap" }, "shift": shift,
            "requester": requester, "substitute": substitute, "reason": reason,
            "status": "pending", "decided_by": null, "decided_at": null,
        });
        self.append(roster, &["requests"], &request).await
    }

    /// Approves or rejects a request; only a leader's approval takes effect on the server.
    pub async fn decide_request(
        &self,
        roster: &DocumentId,
        position: usize,
        approve: bool,
    ) -> Result<(), Error> {
        let by = self.user_id().await?;
        self.change(roster, move |tx| {
            use automerge::ReadDoc;
            use automerge::transaction::Transactable;
            let requests = match tx.get(automerge::ROOT, "requests")? {
                Some((_, list)) => list,
                None => return Err(automerge::AutomergeError::InvalidIndex(position)),
            };
            let request = match tx.get(&requests, position)? {
                Some((_, request)) => request,
                None => return Err(automerge::AutomergeError::InvalidIndex(position)),
            };
            // The server trusts a decision by the actor that wrote `status` (this device's,
            // bound to this user), and Automerge skips a put of the value already there, so
            // the old value is deleted first: this write is ours even if somebody else had
            // already typed "approved".
            tx.delete(&request, "status")?;
            tx.put(
                &request,
                "status",
                if approve { "approved" } else { "rejected" },
            )?;
            tx.put(&request, "decided_by", by.as_str())?;
            tx.put(&request, "decided_at", crate::now_ms())?;
            Ok(())
        })
        .await
    }

    /// Searches the duty record on the server (D20); needs a network.
    pub async fn search(&self, query: &str) -> Result<zhiban_api::SearchHits, Error> {
        let encoded: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
        self.inner
            .session
            .api_get(&format!("/api/search?q={encoded}"))
            .await
    }

    /// Who is on duty in `unit` (default: the user's) at `at` (default: now), from the
    /// server (D5); needs a network.
    pub async fn on_duty(
        &self,
        unit: Option<&str>,
        at: Option<i64>,
    ) -> Result<zhiban_api::OnDuty, Error> {
        let mut path = String::from("/api/oncall?");
        if let Some(unit) = unit {
            let encoded: String = unit.bytes().map(|b| format!("%{b:02X}")).collect();
            path.push_str(&format!("unit={encoded}&"));
        }
        if let Some(at) = at {
            path.push_str(&format!("at={at}"));
        }
        self.inner.session.api_get(&path).await
    }
}
