//! `zhiban search QUERY` — searches the duty record on the server (D20), Chinese included;
//! only what the user may see comes back.

use clap::Args;
use serde_json::Value;
use zhiban_client_core::{Device, DocumentId};

use super::explain_online;
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Search {
    /// What to look for: any part of a record's text.
    query: String,
}

impl Search {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let answer = device
            .search(&self.query)
            .await
            .map_err(|error| explain_online(error, "searching"))?;
        let human = render(&device, &self.query, &answer).await;
        context.out.emit(&answer, human)?;
        Ok(EXIT_OK)
    }
}

/// One line per hit, `ID  TITLE`. The server names incidents only; for other records the
/// title comes from this device's copy when it has one.
async fn render(device: &Device, query: &str, answer: &Value) -> String {
    let hits = answer["hits"].as_array().map_or(&[][..], Vec::as_slice);
    if hits.is_empty() {
        return format!("nothing found for `{query}`");
    }
    let mut lines = Vec::with_capacity(hits.len());
    for hit in hits {
        let id = hit["document_id"].as_str().unwrap_or("?");
        let mut title = hit["title"].as_str().map(str::to_owned);
        if title.is_none()
            && let Ok(document_id) = id.parse::<DocumentId>()
            && let Ok(document) = device.get(&document_id).await
        {
            title = document["title"].as_str().map(str::to_owned);
        }
        lines.push(format!("{id}  {}", title.as_deref().unwrap_or("-")));
    }
    lines.join("\n")
}
