//! `zhiban edit ID [--set PATH=VALUE]... [--note TEXT]...`
//!
//! Each `--set` and each `--note` is one change, on disk when the command returns; a running
//! `zhiban run` of the same device sends it on.

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use zhiban_client_core::DocumentId;

use crate::{Context, EXIT_OK, status_words};

#[derive(Args, Debug)]
#[group(skip)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true).args(["set", "note"])))]
pub(crate) struct Edit {
    /// The document's id, bare or as an `automerge:` URL.
    id: DocumentId,
    /// Set a field: PATH is dotted (`a.b.c`); VALUE is JSON if it parses as JSON
    /// (`42`, `true`, `{"k":1}`, `"text"`), otherwise a plain string.
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_assignment)]
    set: Vec<Assignment>,
    /// Append a note by the current user to the document's notes.
    #[arg(long = "note", value_name = "TEXT")]
    note: Vec<String>,
}

#[derive(Debug, Clone)]
struct Assignment {
    path: Vec<String>,
    value: Value,
}

fn parse_assignment(text: &str) -> Result<Assignment, String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not PATH=VALUE"))?;
    let path: Vec<String> = path.split('.').map(str::to_owned).collect();
    if path.iter().any(|key| key.is_empty()) {
        return Err(format!(
            "`{text}`: the path needs a key between every dot, e.g. a.b.c"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok(Assignment { path, value })
}

impl Edit {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        for assignment in &self.set {
            let path: Vec<&str> = assignment.path.iter().map(String::as_str).collect();
            device.set_field(&self.id, &path, &assignment.value).await?;
        }
        for note in &self.note {
            device.add_note(&self.id, note).await?;
        }
        let status = device.status(&self.id).await?;
        context.out.emit(
            &json!({ "id": self.id, "status": status }),
            format_args!("updated {}: {}", self.id, status_words(status)),
        )?;
        Ok(EXIT_OK)
    }
}
