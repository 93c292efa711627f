//! `zhiban search QUERY` — searches the duty record on the server (D20), Chinese included;
//! only what the user may see comes back.

use clap::Args;
use zhiban_api::SearchHits;
use zhiban_client_core::Device;

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
        context.out.emit(&serde_json::to_value(&answer)?, human)?;
        Ok(EXIT_OK)
    }
}

/// One line per hit, `ID  TITLE`. A hit without a title takes it from this device's copy
/// when it has one.
async fn render(device: &Device, query: &str, answer: &SearchHits) -> String {
    if answer.hits.is_empty() {
        return format!("nothing found for `{query}`");
    }
    let mut lines = Vec::with_capacity(answer.hits.len());
    for hit in &answer.hits {
        let mut title = hit.title.clone();
        if title.is_none()
            && let Ok(document) = device.get(&hit.document_id).await
        {
            title = document["title"].as_str().map(str::to_owned);
        }
        lines.push(format!(
            "{}  {}",
            hit.document_id,
            title.as_deref().unwrap_or("-")
        ));
    }
    lines.join("\n")
}
