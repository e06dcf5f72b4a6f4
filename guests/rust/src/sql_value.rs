//! Values that cross between Rust and SQL: [`SqlValue`] is one of SQLite's
//! five storage classes. Parameters become `SqlValue`s through `From`
//! (usually via [`params!`](crate::params)); a column's value becomes a Rust
//! type through [`FromSql`].

use crate::{Error, Result};

/// A SQLite value: what a parameter binds and what a column holds. Its
/// variants are SQLite's storage classes (what SQL's `typeof()` returns).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float. (SQLite stores NaN as `NULL`.)
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The storage class as SQL's `typeof()` names it: `"null"`,
    /// `"integer"`, `"real"`, `"text"` or `"blob"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Integer(_) => "integer",
            SqlValue::Real(_) => "real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "blob",
        }
    }
}

/// Builds the parameter list of [`Sql::exec`](crate::Sql::exec): each
/// argument goes through [`SqlValue::from`], so integers, floats, `bool`
/// (0 or 1), strings, byte slices and `Option`s of them (`None` is `NULL`)
/// can be mixed.
///
/// ```no_run
/// # fn f(sql: dohost_sdk::Sql) -> dohost_sdk::Result<()> {
/// use dohost_sdk::params;
///
/// let email: Option<&str> = None;
/// sql.exec(
///     "INSERT INTO users (name, age, email) VALUES (?, ?, ?)",
///     params!["Alice", 42, email],
/// )?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! params {
    () => {
        &[][..] as &[$crate::SqlValue]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::SqlValue::from($value)),+][..]
    };
}

macro_rules! from_integer {
    ($($t:ty),+) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::Integer(i64::from(v))
            }
        }
    )+};
}

from_integer!(i64, i32, i16, i8, u32, u16, u8);

impl From<bool> for SqlValue {
    /// `true` is 1 and `false` is 0, as in SQLite.
    fn from(v: bool) -> Self {
        SqlValue::Integer(i64::from(v))
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}

impl From<f32> for SqlValue {
    fn from(v: f32) -> Self {
        SqlValue::Real(f64::from(v))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}

impl From<&[u8]> for SqlValue {
    fn from(v: &[u8]) -> Self {
        SqlValue::Blob(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for SqlValue {
    fn from(v: &[u8; N]) -> Self {
        SqlValue::Blob(v.to_vec())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    /// `None` is `NULL`.
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// A Rust type a column's value converts to, for [`Row::get`](crate::Row::get)
/// and [`Row::get_index`](crate::Row::get_index).
///
/// Conversions are strict, so a wrong column or type is an error rather
/// than a silent zero: integers read only `integer` values (in range),
/// `bool` reads the integers 0 and 1, `f64` reads `real` and `integer`,
/// `String` reads `text`, `Vec<u8>` reads `blob`, `Option<T>` reads `NULL`
/// as `None` and anything else as `T` does, and [`SqlValue`] reads anything.
pub trait FromSql: Sized {
    /// Converts `value`.
    ///
    /// # Errors
    ///
    /// When `value` is not of this type; the message names both types, e.g.
    /// `expected i64, found text`.
    fn from_sql(value: &SqlValue) -> Result<Self>;
}

fn mismatch(expected: &str, found: &SqlValue) -> Error {
    Error::new(format!("expected {expected}, found {}", found.type_name()))
}

macro_rules! from_sql_integer {
    ($($t:ty),+) => {$(
        impl FromSql for $t {
            fn from_sql(value: &SqlValue) -> Result<Self> {
                match value {
                    SqlValue::Integer(i) => <$t>::try_from(*i).map_err(|_| {
                        Error::new(format!(
                            "expected {}, found the integer {i}, which is out of its range",
                            stringify!($t)
                        ))
                    }),
                    other => Err(mismatch(stringify!($t), other)),
                }
            }
        }
    )+};
}

from_sql_integer!(i64, i32, u64, u32);

impl FromSql for bool {
    fn from_sql(value: &SqlValue) -> Result<Self> {
        match value {
            SqlValue::Integer(0) => Ok(false),
            SqlValue::Integer(1) => Ok(true),
            SqlValue::Integer(i) => Err(Error::new(format!(
                "expected bool (the integer 0 or 1), found the integer {i}"
            ))),
            other => Err(mismatch("bool (the integer 0 or 1)", other)),
        }
    }
}

impl FromSql for f64 {
    /// Reads `real` values, and `integer` ones as the nearest `f64` (exact
    /// up to 2^53): SQLite computes `SUM` of integers, for one, as an integer.
    #[allow(clippy::cast_precision_loss)]
    fn from_sql(value: &SqlValue) -> Result<Self> {
        match value {
            SqlValue::Real(f) => Ok(*f),
            SqlValue::Integer(i) => Ok(*i as f64),
            other => Err(mismatch("f64", other)),
        }
    }
}

impl FromSql for String {
    fn from_sql(value: &SqlValue) -> Result<Self> {
        match value {
            SqlValue::Text(s) => Ok(s.clone()),
            other => Err(mismatch("String (text)", other)),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: &SqlValue) -> Result<Self> {
        match value {
            SqlValue::Blob(b) => Ok(b.clone()),
            other => Err(mismatch("Vec<u8> (blob)", other)),
        }
    }
}

impl FromSql for SqlValue {
    fn from_sql(value: &SqlValue) -> Result<Self> {
        Ok(value.clone())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: &SqlValue) -> Result<Self> {
        match value {
            SqlValue::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_values_become_their_storage_class() {
        let values: &[SqlValue] = crate::params![
            1_i64,
            -2_i32,
            3_u32,
            4_u8,
            true,
            false,
            1.5_f64,
            0.25_f32,
            "text",
            String::from("owned"),
            &String::from("borrowed"),
            vec![1_u8, 2],
            &[3_u8][..],
            b"xy",
            None::<i64>,
            Some("some"),
        ];
        assert_eq!(
            values,
            [
                SqlValue::Integer(1),
                SqlValue::Integer(-2),
                SqlValue::Integer(3),
                SqlValue::Integer(4),
                SqlValue::Integer(1),
                SqlValue::Integer(0),
                SqlValue::Real(1.5),
                SqlValue::Real(0.25),
                SqlValue::Text("text".into()),
                SqlValue::Text("owned".into()),
                SqlValue::Text("borrowed".into()),
                SqlValue::Blob(vec![1, 2]),
                SqlValue::Blob(vec![3]),
                SqlValue::Blob(b"xy".to_vec()),
                SqlValue::Null,
                SqlValue::Text("some".into()),
            ]
        );
        let none: &[SqlValue] = crate::params![];
        assert!(none.is_empty());
        let extremes = crate::params![i64::MIN, i64::MAX, u32::MAX];
        assert_eq!(extremes[0], SqlValue::Integer(i64::MIN));
        assert_eq!(extremes[2], SqlValue::Integer(4_294_967_295));
    }

    #[test]
    fn column_values_convert_strictly() {
        let int = SqlValue::Integer(7);
        assert_eq!(i64::from_sql(&int).unwrap(), 7);
        assert_eq!(i32::from_sql(&int).unwrap(), 7);
        assert_eq!(u64::from_sql(&int).unwrap(), 7);
        assert_eq!(u32::from_sql(&int).unwrap(), 7);
        assert!((f64::from_sql(&int).unwrap() - 7.0).abs() < f64::EPSILON);
        assert!(bool::from_sql(&SqlValue::Integer(1)).unwrap());
        assert!(!bool::from_sql(&SqlValue::Integer(0)).unwrap());
        assert_eq!(String::from_sql(&SqlValue::Text("a".into())).unwrap(), "a");
        assert_eq!(
            Vec::<u8>::from_sql(&SqlValue::Blob(vec![9])).unwrap(),
            vec![9]
        );
        assert_eq!(Option::<i64>::from_sql(&SqlValue::Null).unwrap(), None);
        assert_eq!(Option::<i64>::from_sql(&int).unwrap(), Some(7));
        assert_eq!(SqlValue::from_sql(&int).unwrap(), int);

        fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
            r.unwrap_err().message().to_owned()
        }
        assert_eq!(
            err(i64::from_sql(&SqlValue::Text("7".into()))),
            "expected i64, found text"
        );
        assert_eq!(
            err(u32::from_sql(&SqlValue::Integer(-1))),
            "expected u32, found the integer -1, which is out of its range"
        );
        assert_eq!(
            err(i32::from_sql(&SqlValue::Integer(1 << 40))),
            "expected i32, found the integer 1099511627776, which is out of its range"
        );
        assert_eq!(
            err(bool::from_sql(&SqlValue::Integer(2))),
            "expected bool (the integer 0 or 1), found the integer 2"
        );
        assert_eq!(
            err(String::from_sql(&SqlValue::Blob(vec![]))),
            "expected String (text), found blob"
        );
        assert_eq!(
            err(Option::<String>::from_sql(&SqlValue::Real(1.0))),
            "expected String (text), found real"
        );
        assert_eq!(
            err(Vec::<u8>::from_sql(&SqlValue::Null)),
            "expected Vec<u8> (blob), found null"
        );
    }
}
