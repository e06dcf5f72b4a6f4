//! One row of a SQL result: its values with the result's column names, read
//! by name or position ([`Row::get`], [`Row::get_index`]) or decoded whole
//! into a serde type ([`Row::decode`]).

use std::rc::Rc;

use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Number, Value};

use crate::{Error, FromSql, Result, SqlValue};

/// A row of a [`Cursor`](crate::Cursor): one value per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<SqlValue>,
}

impl Row {
    /// A row of `values` under `columns` (the cursor shares one list of
    /// names among its rows).
    pub(crate) fn new(columns: Rc<[String]>, values: Vec<SqlValue>) -> Row {
        Row { columns, values }
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, in column order.
    pub fn values(&self) -> &[SqlValue] {
        &self.values
    }

    /// The values, in column order, without copying them.
    pub fn into_values(self) -> Vec<SqlValue> {
        self.values
    }

    /// The value of the first column called `column`, converted to `T`.
    ///
    /// ```no_run
    /// # fn f(row: dohost_sdk::Row) -> dohost_sdk::Result<()> {
    /// let name: String = row.get("name")?;
    /// let email: Option<String> = row.get("email")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When the row has no such column or its value is not a `T` (see
    /// [`FromSql`]); the message names the column and both types.
    pub fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        let Some(index) = self.columns.iter().position(|c| c == column) else {
            return Err(Error::new(format!(
                "the row has no column {column:?}; its columns are {}",
                self.column_list()
            )));
        };
        self.convert(index)
    }

    /// The value of column `index` (from 0), converted to `T`.
    ///
    /// # Errors
    ///
    /// When the row has no column `index` or its value is not a `T`.
    pub fn get_index<T: FromSql>(&self, index: usize) -> Result<T> {
        if index >= self.values.len() {
            return Err(Error::new(format!(
                "the row has no column {index}: it has {} columns ({})",
                self.values.len(),
                self.column_list()
            )));
        }
        self.convert(index)
    }

    fn convert<T: FromSql>(&self, index: usize) -> Result<T> {
        T::from_sql(&self.values[index]).map_err(|e| {
            let name = self.columns.get(index).map_or("?", String::as_str);
            Error::new(format!("column {name:?} (index {index}): {}", e.message()))
        })
    }

    fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// The row decoded with serde as an object from column name to value:
    /// an `integer` or `real` is a number, `text` a string, a `blob` an
    /// array of byte values and `NULL` is null (so an `Option` field reads
    /// `NULL` as `None`, and a missing `Option` field is `None` too). Where
    /// two columns have the same name (`SELECT *` over a join), the last
    /// one wins; name them apart with `AS`.
    ///
    /// ```no_run
    /// # fn f(row: dohost_sdk::Row) -> dohost_sdk::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct User {
    ///     id: i64,
    ///     name: String,
    ///     email: Option<String>,
    /// }
    /// let user: User = row.decode()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When the row does not decode as a `T`; the message names `T` and,
    /// where one column is at fault, the column. A `real` that is infinite
    /// has no JSON number and is an error too.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::new(format!(
                "the row ({}) does not decode as {}: {e}",
                self.column_list(),
                std::any::type_name::<T>()
            ))
        };
        // Later columns of the same name replace earlier ones, as when
        // building a JSON object.
        let mut last = std::collections::BTreeMap::new();
        for (index, name) in self.columns.iter().enumerate() {
            last.insert(name.as_str(), index);
        }
        let mut columns = Vec::with_capacity(last.len());
        for (index, (name, value)) in self.columns.iter().zip(&self.values).enumerate() {
            if last.get(name.as_str()) != Some(&index) {
                continue;
            }
            let json = to_json(value).ok_or_else(|| {
                fail(&format_args!(
                    "column {name:?} holds {value:?}, which is not a JSON number"
                ))
            })?;
            columns.push((name.clone(), Column { name, json }));
        }
        T::deserialize(MapDeserializer::new(columns.into_iter())).map_err(|e| fail(&e))
    }
}

/// A value as JSON, or `None` for an infinite real.
fn to_json(value: &SqlValue) -> Option<Value> {
    Some(match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(*i),
        SqlValue::Real(f) => Value::Number(Number::from_f64(*f)?),
        SqlValue::Text(s) => Value::String(s.clone()),
        SqlValue::Blob(b) => Value::Array(b.iter().map(|&byte| Value::from(byte)).collect()),
    })
}

/// One column's JSON value, deserialized as `serde_json::Value` would be,
/// with the column's name added to any error it raises.
struct Column<'a> {
    name: &'a str,
    json: Value,
}

/// `e`, raised while decoding column `name`, with the column named.
fn blame(name: &str, e: serde_json::Error) -> serde_json::Error {
    serde::de::Error::custom(format!("column {name:?}: {e}"))
}

impl<'de, 'a> IntoDeserializer<'de, serde_json::Error> for Column<'a> {
    type Deserializer = Column<'a>;

    fn into_deserializer(self) -> Column<'a> {
        self
    }
}

/// Forwards `deserialize_*` methods to the JSON value, blaming the column.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)+) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, serde_json::Error> {
            let Column { name, json } = self;
            json.$method($($arg,)* visitor).map_err(|e| blame(name, e))
        }
    )+};
}

impl<'de> Deserializer<'de> for Column<'_> {
    type Error = serde_json::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn row(columns: &[&str], values: Vec<SqlValue>) -> Row {
        let columns: Vec<String> = columns.iter().map(|&c| c.to_owned()).collect();
        Row::new(columns.into(), values)
    }

    fn users_row() -> Row {
        row(
            &["id", "name", "email", "score", "avatar"],
            vec![
                SqlValue::Integer(1),
                SqlValue::Text("Alice".into()),
                SqlValue::Null,
                SqlValue::Real(2.5),
                SqlValue::Blob(vec![0, 255]),
            ],
        )
    }

    #[test]
    fn get_reads_columns_by_name_and_position() {
        let r = users_row();
        assert_eq!(r.get::<i64>("id").unwrap(), 1);
        assert_eq!(r.get::<String>("name").unwrap(), "Alice");
        assert_eq!(r.get::<Option<String>>("email").unwrap(), None);
        assert_eq!(r.get_index::<Vec<u8>>(4).unwrap(), vec![0, 255]);
        assert_eq!(r.columns()[1], "name");
        assert_eq!(r.values()[0], SqlValue::Integer(1));
        assert_eq!(
            r.get::<i64>("name").unwrap_err().message(),
            "column \"name\" (index 1): expected i64, found text"
        );
        assert_eq!(
            r.get::<i64>("age").unwrap_err().message(),
            "the row has no column \"age\"; its columns are id, name, email, score, avatar"
        );
        assert_eq!(
            r.get_index::<i64>(5).unwrap_err().message(),
            "the row has no column 5: it has 5 columns (id, name, email, score, avatar)"
        );
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct User {
        id: i64,
        name: String,
        email: Option<String>,
        score: f64,
        avatar: Vec<u8>,
    }

    #[test]
    fn decode_reads_the_row_as_an_object() {
        assert_eq!(
            users_row().decode::<User>().unwrap(),
            User {
                id: 1,
                name: "Alice".into(),
                email: None,
                score: 2.5,
                avatar: vec![0, 255],
            }
        );
        assert_eq!(
            users_row().decode::<Value>().unwrap(),
            serde_json::json!({
                "id": 1, "name": "Alice", "email": null, "score": 2.5, "avatar": [0, 255]
            })
        );

        #[derive(Debug, Deserialize, PartialEq)]
        struct Partial {
            name: String,
            missing: Option<i64>,
        }
        assert_eq!(
            users_row().decode::<Partial>().unwrap(),
            Partial {
                name: "Alice".into(),
                missing: None
            }
        );

        // The last of two same-named columns wins.
        let joined = row(
            &["id", "id"],
            vec![SqlValue::Integer(1), SqlValue::Integer(2)],
        );
        assert_eq!(
            joined.decode::<Value>().unwrap(),
            serde_json::json!({"id": 2})
        );
    }

    #[test]
    fn decode_errors_name_the_column_and_the_types() {
        let wrong = row(
            &["id", "name", "email", "score", "avatar"],
            vec![
                SqlValue::Text("one".into()),
                SqlValue::Text("Alice".into()),
                SqlValue::Null,
                SqlValue::Real(2.5),
                SqlValue::Blob(vec![]),
            ],
        );
        let message = wrong.decode::<User>().unwrap_err().message().to_owned();
        assert!(message.contains("column \"id\""), "{message}");
        assert!(message.contains("expected i64"), "{message}");
        assert!(message.contains("User"), "{message}");

        let missing = row(&["id"], vec![SqlValue::Integer(1)]);
        let message = missing.decode::<User>().unwrap_err().message().to_owned();
        assert!(message.contains("missing field `name`"), "{message}");

        let infinite = row(&["score"], vec![SqlValue::Real(f64::INFINITY)]);
        let message = infinite.decode::<Value>().unwrap_err().message().to_owned();
        assert!(
            message.contains("column \"score\" holds Real(inf)"),
            "{message}"
        );
    }
}
