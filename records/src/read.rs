//! Reading a record from a document's JSON view without trusting it. A document is whatever
//! some device wrote: a field of the wrong type must cost that field, not the whole record
//! (a red report with a mistyped level must still reach the leader, D11), and an element of a
//! list must keep its position (instructions and requests are matched to their writers by
//! position). Text is cleaned of control characters before anything stores it.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Most repairs tried on one value before it counts as unreadable.
const MAX_REPAIRS: usize = 64;

/// Reads `value` as a `T`, repairing what does not fit and saying what was repaired in
/// `problems` (each prefixed with `at`, the value's place in the record). A field that does not
/// fit is dropped (so its default applies); a list element that does not fit is read as an
/// empty element, which keeps the positions of the others. None only when the value itself
/// cannot be a `T` at all.
pub fn lenient<T: DeserializeOwned>(
    mut value: Value,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    for _ in 0..MAX_REPAIRS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(read) => return Some(read),
            Err(error) => error,
        };
        let path: Vec<Step> = error.path().iter().filter_map(Step::of).collect();
        problems.push(format!("{}: {}", place(at, &path), error.inner()));
        if path.is_empty() || !repair(&mut value, &path) {
            return None;
        }
    }
    problems.push(format!("{}: too many faults to read", place(at, &[])));
    None
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    fn of(segment: &serde_path_to_error::Segment) -> Option<Step> {
        match segment {
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        }
    }
}

fn place(at: &str, path: &[Step]) -> String {
    let mut place = at.to_owned();
    for step in path {
        match step {
            Step::Key(key) if place.is_empty() => place.push_str(key),
            Step::Key(key) => {
                place.push('.');
                place.push_str(key);
            }
            Step::Index(index) => place.push_str(&format!("[{index}]")),
        }
    }
    if place.is_empty() {
        "record".into()
    } else {
        place
    }
}

/// Makes the value at `path` smaller: a field becomes absent; a list element becomes `{}`,
/// then absent. Each step shrinks the value, so repairs end.
fn repair(value: &mut Value, path: &[Step]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut parent = &mut *value;
    for step in parent_path {
        let next = match (step, parent) {
            (Step::Key(key), Value::Object(map)) => map.get_mut(key),
            (Step::Index(index), Value::Array(list)) => list.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => parent = next,
            None => return false,
        }
    }
    match (last, parent) {
        // Absent, the field's default applies.
        (Step::Key(key), Value::Object(map)) => map.remove(key).is_some(),
        (Step::Index(index), Value::Array(list)) if *index < list.len() => {
            match &list[*index] {
                Value::Object(map) if map.is_empty() => {
                    list.remove(*index);
                }
                _ => list[*index] = Value::Object(Default::default()),
            }
            true
        }
        // A struct missing a required field: serde names the struct, so repair it as a whole.
        _ => false,
    }
}

/// Takes the item list `key` out of a record's view, so the header and each item are read on
/// their own (an item in its place whatever its neighbours hold).
pub fn take_items(view: &mut Value, key: &str, errors: &mut Vec<String>) -> Vec<Value> {
    match view.as_object_mut().and_then(|map| map.remove(key)) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            errors.push(format!("{key}: not a list"));
            Vec::new()
        }
    }
}

/// Removes control characters (NUL and the like; newlines and tabs stay) from every string in
/// `value`: PostgreSQL refuses NUL in text, and no duty record needs the others. Iterative, so
/// deep nesting cannot overflow the stack.
pub fn clean(value: &mut Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => clean_text(text),
            Value::Array(items) => pending.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|key| key.chars().any(is_stripped)) {
                    let fields = std::mem::take(map);
                    for (mut key, field) in fields {
                        clean_text(&mut key);
                        map.insert(key, field);
                    }
                }
                pending.extend(map.values_mut());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn is_stripped(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` without control characters other than newline and tab.
pub fn clean_text(text: &mut String) {
    if text.chars().any(is_stripped) {
        text.retain(|c| !is_stripped(c));
    }
}

/// Keys whose values are identifiers or codes, not text anyone searches for.
const NOT_SEARCHED: [&str; 9] = [
    "type",
    "schema",
    "unit",
    "classification",
    "device",
    "reported_by",
    "by",
    "created_by",
    "user_id",
];

/// Every searchable text in `value`, one per line, skipping the keys in `skip` at the top
/// level (a record's item lists, searched item by item). Iterative like [`clean`].
pub fn search_text(value: &Value, skip: &[&str]) -> String {
    let mut out = String::new();
    let mut pending: Vec<&Value> = vec![];
    match value {
        Value::Object(map) => pending.extend(
            map.iter()
                .filter(|(key, _)| {
                    !skip.contains(&key.as_str()) && !NOT_SEARCHED.contains(&key.as_str())
                })
                .map(|(_, field)| field)
                .rev(),
        ),
        other => pending.push(other),
    }
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if !text.trim().is_empty() => {
                out.push_str(text);
                out.push('\n');
            }
            Value::Array(items) => pending.extend(items.iter().rev()),
            Value::Object(map) => pending.extend(
                map.iter()
                    .filter(|(key, _)| !NOT_SEARCHED.contains(&key.as_str()))
                    .map(|(_, field)| field)
                    .rev(),
            ),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        #[serde(default)]
        name: String,
        #[serde(default)]
        count: Option<u8>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Holder {
        #[serde(default)]
        title: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[test]
    fn a_bad_field_costs_that_field_and_positions_are_kept() {
        let mut problems = Vec::new();
        let read: Holder = lenient(
            json!({"title": 7, "items": [{"name": "a"}, "junk", {"name": "c", "count": 300}]}),
            "",
            &mut problems,
        )
        .unwrap();
        assert_eq!(read.title, "");
        assert_eq!(
            read.items,
            vec![
                Item {
                    name: "a".into(),
                    count: None
                },
                Item {
                    name: String::new(),
                    count: None
                },
                Item {
                    name: "c".into(),
                    count: None
                },
            ]
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("items[1]:"), "{problems:?}");
        assert!(problems[1].starts_with("items[2].count:"), "{problems:?}");
        assert!(problems[2].starts_with("title:"), "{problems:?}");
        let none: Option<Holder> = lenient(json!("not a record"), "", &mut problems);
        assert!(none.is_none());
    }

    #[test]
    fn control_characters_are_stripped_everywhere() {
        let mut value =
            json!({"ti\u{0}tle": "a\u{0}b\u{7}c\nd", "deep": [[{"x": "\u{1b}[31mred"}]]});
        clean(&mut value);
        assert_eq!(
            value,
            json!({"title": "abc\nd", "deep": [[{"x": "[31mred"}]]})
        );
    }

    #[test]
    fn search_text_skips_identifiers_and_item_lists() {
        let value = json!({
            "type": "duty_log", "title": "夜班", "by": "u1",
            "entries": [{"content": "来电"}], "notes": [{"by": "u2", "text": "备注"}],
        });
        assert_eq!(search_text(&value, &["entries"]), "备注\n夜班\n");
        assert_eq!(search_text(&value, &[]), "来电\n备注\n夜班\n");
    }
}
