//! The storage backends (see [`crate::Backend`]).

pub mod redb;
