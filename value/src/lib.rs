//! Values in the format every dohost SDK reads (docs/values.md): stored
//! values, WebSocket attachments, RPC arguments and results. JSON, or CBOR
//! after the self-describe tag 55799 for what JSON cannot hold, as the
//! JavaScript SDK writes values that need structured clone (`Date`, `Map`,
//! `BigInt`, `undefined`, cycles, ...).
//!
//! Rust writes JSON (serde_json), which the JavaScript SDK reads as before.
//! It reads both: CBOR through ciborium, with JavaScript's types
//! mapped onto serde's data model: a `Date` as seconds since 1970 (`f64`),
//! a `Map` as a map, a `Set` as a sequence, a `BigInt` as an integer
//! (`i128`/`u128`), an `ArrayBuffer` or a typed array as bytes
//! (`serde_bytes`-style, or `Vec<u8>`), `undefined` as `None` or `()`, a
//! `RegExp` as `[source, flags]`, an `Error` as `["Error", name, message,
//! stack]`. A value that reaches one object twice (a cycle) has no serde
//! form and fails to read.

use ciborium::value::Integer;
pub use ciborium::value::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The bytes that open a CBOR value: the self-describe tag 55799, which no
/// JSON text starts with.
pub const CBOR_PREFIX: [u8; 3] = [0xd9, 0xd9, 0xf7];

const TAG_BIGNUM: u64 = 2;
const TAG_NEGATIVE_BIGNUM: u64 = 3;
const TAG_SHARED_REF: u64 = 29;

/// Reads a stored value as `T`: CBOR when it opens with [`CBOR_PREFIX`],
/// JSON otherwise.
///
/// # Errors
///
/// A message saying why the bytes are not a `T`.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let Some(cbor) = bytes.strip_prefix(&CBOR_PREFIX) else {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    };
    cbor_value(cbor)?.deserialized().map_err(|e| e.to_string())
}

/// The CBOR item of `cbor` (what follows [`CBOR_PREFIX`]), its tags taken
/// to serde's data model.
fn cbor_value(cbor: &[u8]) -> Result<Value, String> {
    untagged(ciborium::from_reader(cbor).map_err(|e| format!("not valid CBOR: {e}"))?)
}

/// The bytes of `value`, as JSON.
///
/// # Errors
///
/// When serde cannot serialise it (a map with keys that are not strings).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

/// `value` with JavaScript's tags replaced by the data they carry, as
/// serde's data model has it (see the module's documentation).
fn untagged(value: Value) -> Result<Value, String> {
    Ok(match value {
        Value::Tag(TAG_SHARED_REF, _) => {
            return Err(
                "the value reaches one object twice (a cycle, or a shared reference), which serde cannot represent"
                    .to_owned(),
            );
        }
        Value::Tag(tag @ (TAG_BIGNUM | TAG_NEGATIVE_BIGNUM), inner) => match *inner {
            Value::Bytes(bytes) if bytes.len() <= 16 => {
                let magnitude = bytes.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b));
                let n = if tag == TAG_BIGNUM {
                    i128::try_from(magnitude).ok()
                } else {
                    i128::try_from(magnitude).ok().map(|m| -1 - m)
                };
                match n.and_then(|n| Integer::try_from(n).ok()) {
                    Some(n) => Value::Integer(n),
                    None => return Err("a BigInt beyond 64 bits".to_owned()),
                }
            }
            _ => return Err("a BigInt beyond 128 bits".to_owned()),
        },
        Value::Tag(_, inner) => untagged(*inner)?,
        Value::Array(items) => {
            Value::Array(items.into_iter().map(untagged).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((untagged(k)?, untagged(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other,
    })
}

/// The JSON array of an RPC call's positional arguments from `args`: a
/// tuple's items (none for `()`), or one other value as the only argument.
///
/// # Errors
///
/// A message when serde cannot write `args` as JSON.
pub fn arguments_json(args: &impl Serialize) -> Result<String, String> {
    let value = serde_json::to_value(args)
        .map_err(|e| format!("the arguments cannot be written as JSON: {e}"))?;
    Ok(match value {
        serde_json::Value::Null => "[]".to_owned(),
        serde_json::Value::Array(_) => value.to_string(),
        one => serde_json::Value::Array(vec![one]).to_string(),
    })
}

/// An RPC call's positional arguments, from their bytes (an array, as JSON
/// or CBOR; JSON `null` for none), each to be read with
/// [`Value::deserialized`].
///
/// # Errors
///
/// A message when the bytes are not an array.
pub fn arguments(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = match bytes.strip_prefix(&CBOR_PREFIX) {
        Some(cbor) => cbor_value(cbor)?,
        None => serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?,
    };
    match value {
        Value::Array(args) => Ok(args),
        Value::Null => Ok(Vec::new()),
        _ => Err("the arguments are not an array".to_owned()),
    }
}

/// Whether `bytes` hold an array (JSON or CBOR), as a call's arguments
/// must: checked without decoding the items.
pub fn is_array(bytes: &[u8]) -> bool {
    match bytes.strip_prefix(&CBOR_PREFIX) {
        // An array head (major type 4), maybe marked shareable (tag 28).
        Some(cbor) => matches!(cbor, [0x80..=0x9f, ..] | [0xd8, 0x1c, 0x80..=0x9f, ..]),
        None => serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(bytes).is_ok(),
    }
}

/// The JSON text of `bytes` (JSON as it is; CBOR read as serde's data
/// model has it, see the module's documentation).
///
/// # Errors
///
/// A message when the bytes cannot be read, or hold what JSON cannot
/// (a cycle, a map with keys that are not strings).
pub fn to_json_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(&CBOR_PREFIX) {
        return String::from_utf8(bytes.to_vec()).map_err(|e| format!("not UTF-8: {e}"));
    }
    let value: serde_json::Value = from_bytes(bytes)?;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CBOR bytes of `value` after the prefix, as the JavaScript SDK writes them.
    fn cbor(value: &Value) -> Vec<u8> {
        let mut bytes = CBOR_PREFIX.to_vec();
        ciborium::into_writer(value, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn call_arguments_are_a_tuple_or_one_value() {
        assert_eq!(arguments_json(&()).unwrap(), "[]");
        assert_eq!(arguments_json(&5).unwrap(), "[5]");
        assert_eq!(arguments_json(&(5,)).unwrap(), "[5]");
        assert_eq!(arguments_json(&(1, "a")).unwrap(), r#"[1,"a"]"#);
        assert_eq!(arguments_json(&(2, "x")).unwrap(), "[2,\"x\"]");
        assert_eq!(arguments_json(&(vec![1, 2],)).unwrap(), "[[1,2]]");
    }

    #[test]
    fn arguments_come_from_json_or_cbor_arrays() {
        assert_eq!(arguments(b"[1,\"a\"]").unwrap().len(), 2);
        assert!(arguments(b"null").unwrap().is_empty());
        assert!(arguments(b"{}").is_err());
        let date = Value::Tag(1, Box::new(Value::Float(1.5)));
        let args = arguments(&cbor(&Value::Array(vec![date, Value::Null]))).unwrap();
        assert_eq!(args[0].deserialized::<f64>().unwrap(), 1.5);
        assert!(is_array(&cbor(&Value::Array(vec![]))));
        assert!(!is_array(&cbor(&Value::Integer(1.into()))));
        assert!(is_array(b"[]") && !is_array(b"{}"));
    }

    #[test]
    fn tagged_values_read_as_serde_types() {
        let map = Value::Tag(
            259,
            Box::new(Value::Map(vec![(
                Value::Text("a".into()),
                Value::Integer(1.into()),
            )])),
        );
        let read: std::collections::BTreeMap<String, u8> = from_bytes(&cbor(&map)).unwrap();
        assert_eq!(read["a"], 1);
        assert_eq!(to_json_text(&cbor(&map)).unwrap(), r#"{"a":1}"#);
        assert_eq!(to_json_text(b"[1]").unwrap(), "[1]");
        let cycle = Value::Tag(
            28,
            Box::new(Value::Array(vec![Value::Tag(
                29,
                Box::new(Value::Integer(0.into())),
            )])),
        );
        assert!(
            from_bytes::<serde_json::Value>(&cbor(&cycle))
                .unwrap_err()
                .contains("cycle")
        );
    }
}
