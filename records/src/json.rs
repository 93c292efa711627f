//! JSON in and out of Automerge documents, for callers that think in JSON (the CLI, scripts,
//! bindings). Strings are written as plain scalar strings; both scalar strings and
//! collaborative text (what the JavaScript client writes by default) read back as strings.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Number, Value as Json};

/// Writes `value` under `key` of the map `object`.
pub fn put<T: Transactable>(
    tx: &mut T,
    object: &ObjId,
    key: &str,
    value: &Json,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Json::Array(items) => {
            let list = tx.put_object(object, key, ObjType::List)?;
            for (index, item) in items.iter().enumerate() {
                insert(tx, &list, index, item)?;
            }
        }
        Json::Object(fields) => {
            let map = tx.put_object(object, key, ObjType::Map)?;
            for (field, item) in fields {
                put(tx, &map, field, item)?;
            }
        }
        scalar => tx.put(object, key, to_scalar(scalar))?,
    }
    Ok(())
}

/// Inserts `value` at `index` of the list `list`.
pub fn insert<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    index: usize,
    value: &Json,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Json::Array(items) => {
            let inner = tx.insert_object(list, index, ObjType::List)?;
            for (position, item) in items.iter().enumerate() {
                insert(tx, &inner, position, item)?;
            }
        }
        Json::Object(fields) => {
            let map = tx.insert_object(list, index, ObjType::Map)?;
            for (field, item) in fields {
                put(tx, &map, field, item)?;
            }
        }
        scalar => tx.insert(list, index, to_scalar(scalar))?,
    }
    Ok(())
}

fn to_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(u)) => ScalarValue::Uint(u),
            _ => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => ScalarValue::Null,
    }
}

/// Objects nested deeper than this read as null. The server refuses changes that nest deeper
/// than its (lower) limit; this bound keeps the recursion here from ever exhausting the stack
/// on a document that came from anywhere else.
pub const MAX_DEPTH: usize = 128;

/// The whole object `object` of `doc` as JSON.
pub fn read<R: ReadDoc>(doc: &R, object: &ObjId) -> Json {
    read_at(doc, object, 0)
}

fn read_at<R: ReadDoc>(doc: &R, object: &ObjId, depth: usize) -> Json {
    if depth >= MAX_DEPTH {
        return Json::Null;
    }
    match doc.object_type(object) {
        Ok(ObjType::Map) | Ok(ObjType::Table) => {
            let mut fields = Map::new();
            for key in doc.keys(object) {
                if let Ok(Some((value, id))) = doc.get(object, key.as_str()) {
                    fields.insert(key, value_at(doc, value, &id, depth));
                }
            }
            Json::Object(fields)
        }
        Ok(ObjType::List) => Json::Array(
            (0..doc.length(object))
                .filter_map(|index| doc.get(object, index).ok().flatten())
                .map(|(value, id)| value_at(doc, value, &id, depth))
                .collect(),
        ),
        Ok(ObjType::Text) => Json::String(doc.text(object).unwrap_or_default()),
        Err(_) => Json::Null,
    }
}

/// The map `object` of `doc` as JSON without the keys in `skip` (a long record's header
/// without its items).
pub fn read_except<R: ReadDoc>(doc: &R, object: &ObjId, skip: &[&str]) -> Json {
    let mut fields = Map::new();
    for key in doc.keys(object) {
        if skip.contains(&key.as_str()) {
            continue;
        }
        if let Ok(Some((value, id))) = doc.get(object, key.as_str()) {
            fields.insert(key, read_value(doc, value, &id));
        }
    }
    Json::Object(fields)
}

/// A field of the map `object` as text, whether stored as a plain string or as collaborative
/// text (what the JavaScript client writes by default).
pub fn text<R: ReadDoc>(doc: &R, object: &ObjId, key: &str) -> Option<String> {
    match doc.get(object, key).ok()?? {
        (Value::Scalar(scalar), _) => scalar.as_str().map(str::to_owned),
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

/// One value read from `doc` (`id` is where it lives) as JSON.
pub fn read_value<R: ReadDoc>(doc: &R, value: Value<'_>, id: &ObjId) -> Json {
    value_at(doc, value, id, 0)
}

fn value_at<R: ReadDoc>(doc: &R, value: Value<'_>, id: &ObjId, depth: usize) -> Json {
    match value {
        Value::Object(_) => read_at(doc, id, depth + 1),
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(s) => Json::String(s.to_string()),
            ScalarValue::Int(i) => Json::Number((*i).into()),
            ScalarValue::Uint(u) => Json::Number((*u).into()),
            ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
            ScalarValue::Counter(c) => Json::Number(i64::from(c).into()),
            ScalarValue::Timestamp(t) => Json::Number((*t).into()),
            ScalarValue::Boolean(b) => Json::Bool(*b),
            ScalarValue::Null => Json::Null,
            ScalarValue::Bytes(bytes) => {
                Json::Array(bytes.iter().map(|b| Json::Number((*b).into())).collect())
            }
            other => Json::String(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ROOT};
    use serde_json::json;

    #[test]
    fn json_round_trips_through_a_document() {
        let value = json!({
            "title": "山体滑坡", "level": 2, "ratio": 0.5, "urgent": true, "none": null,
            "notes": ["one", {"by": "alice"}], "place": {"lat": 30.5, "name": "桥"}
        });
        let mut doc = AutoCommit::new();
        for (key, field) in value.as_object().unwrap() {
            put(&mut doc, &ROOT, key, field).unwrap();
        }
        assert_eq!(read(&doc, &ROOT), value);
    }
}
