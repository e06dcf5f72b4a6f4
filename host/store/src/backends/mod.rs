//! The storage backends (see [`crate::Backend`]).

pub mod postgres;
pub mod redb;
