//! Stored values in the format every SDK reads (docs/values.md): JSON, or
//! CBOR after the self-describe tag 55799 for what JSON cannot hold, as the
//! JavaScript SDK writes values that need structured clone (`Date`, `Map`,
//! `BigInt`, `undefined`, cycles, ...).
//!
//! This SDK writes JSON (serde_json), which the JavaScript SDK reads as
//! before. It reads both: CBOR through ciborium, with JavaScript's types
//! mapped onto serde's data model: a `Date` as seconds since 1970 (`f64`),
//! a `Map` as a map, a `Set` as a sequence, a `BigInt` as an integer
//! (`i128`/`u128`), an `ArrayBuffer` or a typed array as bytes
//! (`serde_bytes`-style, or `Vec<u8>`), `undefined` as `None` or `()`, a
//! `RegExp` as `[source, flags]`, an `Error` as `["Error", name, message,
//! stack]`. A value that reaches one object twice (a cycle) has no serde
//! form and fails to read.

use ciborium::value::{Integer, Value};
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
    let value: Value = ciborium::from_reader(cbor).map_err(|e| format!("not valid CBOR: {e}"))?;
    untagged(value)?.deserialized().map_err(|e| e.to_string())
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
