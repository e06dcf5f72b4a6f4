//! The SQL operations of `POST /ops` (see `ops.rs`), and how SQL values are
//! written in their JSON.
//!
//! A value is `null`, `{"i": "<decimal>"}` (a string, so every `i64`
//! survives JSON; a JSON integer is accepted too), `{"f": <number>}` (or
//! `{"f": "NaN" | "inf" | "-inf"}`), `{"t": "<text>"}` or
//! `{"b": "<hex>"}`.
//!
//! - `{"op": "sql", "query", "params"}`: runs `exec` and reads every row;
//!   `{"columns": [..], "rows": [[value, ..], ..], "rows_read", "rows_written"}`
//!   (the counts after the last row).
//! - `{"op": "sql_stream", "query", "params"}`: walks the rows through the
//!   SDK's iterator without keeping them; `{"rows": <count>, "bytes": <bytes
//!   of text and blob values>, "sum": "<sum of integer values>"}`.
//! - `{"op": "sql_size"}`: `database_size`.
//! - `{"op": "sql_open", "name", "query", "params", "batch"}`: runs `exec`
//!   and keeps the cursor under `name` (across events, until the object is
//!   reset), fetching `batch` rows per host call (default 1); the column
//!   names.
//! - `{"op": "sql_next", "name", "max"}`: up to `max` more rows of that
//!   cursor (`[]` once it is done); `{"rows": [..], "rows_read",
//!   "rows_written"}`.
//! - `{"op": "sql_close", "name"}`: drops that cursor; whether it existed.
//! - `{"op": "sql_point", "query", "id_from", "id_count", "times"}`: runs
//!   `exec` `times` times with the one integer parameter `id_from`,
//!   `id_from + 1`, .. (starting over after `id_count` ids, default 1), each
//!   result read with `one()`, the way an object runs a point query, with no
//!   JSON per query; `{"rows": <count>, "bytes": <bytes of text and blob
//!   values>}`.

use std::cell::RefCell;
use std::collections::HashMap;

use dohost_sdk::{Cursor, Error, Result, SqlValue, Storage};
use serde_json::{Value, json};

thread_local! {
    /// Cursors kept by `sql_open`, by name.
    static CURSORS: RefCell<HashMap<String, Cursor>> = RefCell::new(HashMap::new());
}

fn bad(what: &Value, why: &str) -> Error {
    Error::new(format!("bad SQL value {what}: {why}"))
}

/// A SQL value from its JSON form.
pub fn decode_value(v: &Value) -> Result<SqlValue> {
    let Some(object) = v.as_object() else {
        return match v {
            Value::Null => Ok(SqlValue::Null),
            _ => Err(bad(v, "expected null or an object {i|f|t|b: ..}")),
        };
    };
    let mut fields = object.iter();
    let (Some((kind, inner)), None) = (fields.next(), fields.next()) else {
        return Err(bad(v, "expected exactly one of i, f, t, b"));
    };
    match (kind.as_str(), inner) {
        ("i", Value::String(s)) => s
            .parse()
            .map(SqlValue::Integer)
            .map_err(|e| bad(v, &e.to_string())),
        ("i", Value::Number(n)) => n
            .as_i64()
            .map(SqlValue::Integer)
            .ok_or_else(|| bad(v, "not an i64")),
        ("f", Value::Number(n)) => n
            .as_f64()
            .map(SqlValue::Real)
            .ok_or_else(|| bad(v, "not an f64")),
        ("f", Value::String(s)) => match s.as_str() {
            "NaN" => Ok(SqlValue::Real(f64::NAN)),
            "inf" => Ok(SqlValue::Real(f64::INFINITY)),
            "-inf" => Ok(SqlValue::Real(f64::NEG_INFINITY)),
            _ => Err(bad(v, "a real as a string is NaN, inf or -inf")),
        },
        ("t", Value::String(s)) => Ok(SqlValue::Text(s.clone())),
        ("b", Value::String(hex)) => from_hex(hex)
            .map(SqlValue::Blob)
            .ok_or_else(|| bad(v, "not hex")),
        _ => Err(bad(
            v,
            "expected {i: string}, {f: number}, {t: string} or {b: hex}",
        )),
    }
}

/// A SQL value in its JSON form.
pub fn encode_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!({ "i": i.to_string() }),
        SqlValue::Real(f) if f.is_nan() => json!({ "f": "NaN" }),
        SqlValue::Real(f) if f.is_infinite() => {
            json!({ "f": if *f > 0.0 { "inf" } else { "-inf" } })
        }
        SqlValue::Real(f) => json!({ "f": f }),
        SqlValue::Text(s) => json!({ "t": s }),
        SqlValue::Blob(b) => json!({ "b": to_hex(b) }),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn exec(storage: &Storage, query: &str, params: &[Value]) -> Result<Cursor> {
    let params = params
        .iter()
        .map(decode_value)
        .collect::<Result<Vec<_>>>()?;
    storage.sql().exec(query, &params)
}

fn encode_row(values: Vec<SqlValue>) -> Value {
    Value::Array(values.iter().map(encode_value).collect())
}

/// `sql`: every row of the result.
pub fn sql(storage: &Storage, query: &str, params: &[Value]) -> Result<Value> {
    let mut cursor = exec(storage, query, params)?;
    let columns = cursor.column_names().to_vec();
    let rows = cursor
        .by_ref()
        .map(|row| row.map(|row| encode_row(row.into_values())))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "columns": columns,
        "rows": rows,
        "rows_read": cursor.rows_read(),
        "rows_written": cursor.rows_written(),
    }))
}

/// `sql_stream`: counts and sums of every row, none kept.
pub fn sql_stream(storage: &Storage, query: &str, params: &[Value]) -> Result<Value> {
    let (mut rows, mut bytes, mut sum) = (0_u64, 0_u64, 0_i128);
    for row in exec(storage, query, params)? {
        rows += 1;
        for value in row?.values() {
            match value {
                SqlValue::Integer(i) => sum += i128::from(*i),
                SqlValue::Text(s) => bytes += s.len() as u64,
                SqlValue::Blob(b) => bytes += b.len() as u64,
                SqlValue::Null | SqlValue::Real(_) => {}
            }
        }
    }
    Ok(json!({ "rows": rows, "bytes": bytes, "sum": sum.to_string() }))
}

/// `sql_size`.
pub fn sql_size(storage: &Storage) -> Value {
    json!(storage.sql().database_size())
}

/// `sql_open`: keeps the cursor under `name`.
pub fn sql_open(
    storage: &Storage,
    name: &str,
    query: &str,
    params: &[Value],
    batch: u32,
) -> Result<Value> {
    let cursor = exec(storage, query, params)?.with_batch_size(batch);
    let columns = cursor.column_names().to_vec();
    CURSORS.with(|c| c.borrow_mut().insert(name.to_owned(), cursor));
    Ok(json!(columns))
}

/// `sql_next`: up to `max` more rows of the cursor under `name`.
pub fn sql_next(name: &str, max: u32) -> Result<Value> {
    CURSORS.with(|c| {
        let mut cursors = c.borrow_mut();
        let cursor = cursors
            .get_mut(name)
            .ok_or_else(|| Error::new(format!("no open cursor {name:?}")))?;
        let rows = cursor
            .by_ref()
            .take(max as usize)
            .map(|row| row.map(|row| encode_row(row.into_values())))
            .collect::<Result<Vec<_>>>()?;
        Ok(json!({
            "rows": rows,
            "rows_read": cursor.rows_read(),
            "rows_written": cursor.rows_written(),
        }))
    })
}

/// `sql_close`: whether a cursor was open under `name`.
pub fn sql_close(name: &str) -> Value {
    json!(CURSORS.with(|c| c.borrow_mut().remove(name)).is_some())
}

/// `sql_point`: `times` point queries, one row each.
pub fn sql_point(
    storage: &Storage,
    query: &str,
    id_from: i64,
    id_count: u32,
    times: u32,
) -> Result<Value> {
    let sql = storage.sql();
    let mut bytes = 0_u64;
    for i in 0..times {
        let id = id_from + i64::from(i % id_count.max(1));
        let row = sql.exec(query, &[SqlValue::Integer(id)])?.one()?;
        for value in row.values() {
            match value {
                SqlValue::Text(s) => bytes += s.len() as u64,
                SqlValue::Blob(b) => bytes += b.len() as u64,
                SqlValue::Null | SqlValue::Integer(_) | SqlValue::Real(_) => {}
            }
        }
    }
    Ok(json!({ "rows": times, "bytes": bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_json() {
        for value in [
            SqlValue::Null,
            SqlValue::Integer(i64::MIN),
            SqlValue::Integer(i64::MAX),
            SqlValue::Real(-1.25),
            SqlValue::Real(f64::INFINITY),
            SqlValue::Real(f64::NEG_INFINITY),
            SqlValue::Text("héllo".into()),
            SqlValue::Blob(vec![0, 0xab, 0xff]),
        ] {
            assert_eq!(decode_value(&encode_value(&value)).unwrap(), value);
        }
        assert_eq!(
            encode_value(&SqlValue::Integer(i64::MIN)),
            json!({"i": "-9223372036854775808"})
        );
        assert_eq!(
            encode_value(&SqlValue::Blob(vec![1, 255])),
            json!({"b": "01ff"})
        );
        assert!(decode_value(&json!({"b": "0"})).is_err());
        assert!(decode_value(&json!({"b": "+f"})).is_err());
        assert!(decode_value(&json!({"i": "1", "t": "x"})).is_err());
        assert!(decode_value(&json!("text")).is_err());
    }
}
