//! `dohost:object/types`: records only, nothing to implement.

use crate::runtime::GuestState;
use crate::runtime::bindings::object::dohost::object::types::Host;

impl<Io: Send> Host for GuestState<Io> {}
