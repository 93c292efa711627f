//! `zhiban list` — every document on this device, with its delivery status.

use std::fmt::Write as _;

use clap::Args;
use serde_json::json;
use zhiban_client_core::{DeliveryStatus, DocumentSummary};

use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct List {}

impl List {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let documents = device.list().await?;
        let json: Vec<_> = documents
            .iter()
            .map(|summary| {
                json!({
                    "id": summary.id,
                    "kind": summary.kind,
                    "title": summary.title,
                    "status": summary.status,
                })
            })
            .collect();
        context.out.emit(&json.into(), table(&documents))?;
        Ok(EXIT_OK)
    }
}

fn table(documents: &[DocumentSummary]) -> String {
    if documents.is_empty() {
        return "no documents on this device".into();
    }
    let rows: Vec<[String; 4]> = documents
        .iter()
        .map(|summary| {
            [
                summary.id.to_string(),
                summary.kind.clone().unwrap_or_else(|| "-".into()),
                match summary.status {
                    DeliveryStatus::SavedOnDevice => "saved on device".into(),
                    DeliveryStatus::ReceivedByServer => "received".into(),
                },
                summary.title.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["ID", "KIND", "STATUS", "TITLE"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.pop();
    text
}
