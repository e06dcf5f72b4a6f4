//! The object's durable key-value storage (Cloudflare's `ctx.storage`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::dohost::object::storage as wit;
use crate::{Error, Result};

/// Which entries [`Storage::list`] returns. `Default` lists every key in
/// ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys `>= start`.
    pub start: Option<String>,
    /// Only keys `< end`.
    pub end: Option<String>,
    /// Only keys beginning with `prefix`.
    pub prefix: Option<String>,
    /// Descending order (the range stays the same).
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<u32>,
}

/// The object's storage. Writes are visible at once to later reads and are
/// made durable together at the end of the event; the host holds the
/// event's response until they are.
///
/// Typed values are stored as JSON (so other languages read them the same);
/// the `_bytes` methods store raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Storage {
    _private: (),
}

impl Storage {
    pub(crate) fn new() -> Storage {
        Storage { _private: () }
    }

    /// The value under `key`, decoded from JSON.
    ///
    /// # Errors
    ///
    /// When the key is too long, the host cannot read, or the stored value is
    /// not JSON of type `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_bytes(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::new(format!(
                    "the value under {key:?} is not the expected JSON: {e}"
                ))
            }),
        }
    }

    /// Stores `value` as JSON under `key`.
    ///
    /// # Errors
    ///
    /// When the key or the encoded value is over its limit.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::new(format!("cannot encode the value for {key:?}: {e}")))?;
        self.put_bytes(key, &bytes)
    }

    /// The raw bytes under `key`.
    ///
    /// # Errors
    ///
    /// When the key is too long or the host cannot read.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(wit::get(key)?)
    }

    /// Stores raw bytes under `key`.
    ///
    /// # Errors
    ///
    /// When the key or the value is over its limit.
    pub fn put_bytes(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(wit::put(key, value)?)
    }

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// When the key is too long or the host cannot read.
    pub fn delete(&self, key: &str) -> Result<bool> {
        Ok(wit::delete(key)?)
    }

    /// Entries chosen by `options`, values decoded from JSON.
    ///
    /// # Errors
    ///
    /// When the host cannot read or a value is not JSON of type `T`.
    pub fn list<T: DeserializeOwned>(&self, options: &ListOptions) -> Result<Vec<(String, T)>> {
        self.list_bytes(options)?
            .into_iter()
            .map(|(k, v)| match serde_json::from_slice(&v) {
                Ok(value) => Ok((k, value)),
                Err(e) => Err(Error::new(format!(
                    "the value under {k:?} is not the expected JSON: {e}"
                ))),
            })
            .collect()
    }

    /// Entries chosen by `options`, as raw bytes.
    ///
    /// # Errors
    ///
    /// When the host cannot read, or `limit` is 0.
    pub fn list_bytes(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(wit::list(&wit::ListOptions {
            start: options.start.clone(),
            end: options.end.clone(),
            prefix: options.prefix.clone(),
            reverse: options.reverse,
            limit: options.limit,
        })?)
    }
}

impl From<wit::StorageError> for Error {
    fn from(e: wit::StorageError) -> Self {
        Error::new(match e {
            wit::StorageError::KeyTooLarge(n) => {
                format!("storage key of {n} bytes is over the limit of 2048 bytes")
            }
            wit::StorageError::ValueTooLarge(n) => {
                format!("storage value of {n} bytes is over the limit of 131072 bytes")
            }
            wit::StorageError::InvalidLimit => "list limit must be at least 1".to_owned(),
            wit::StorageError::Internal(m) => format!("storage failed: {m}"),
        })
    }
}
