//! Code updates: a component swapped into a running host.
//!
//! Each namespace (and the entry worker) reads its component through a
//! [`Code`]: the current `InstancePre` and a generation number. A reload
//! ([`crate::Host::reload`], or `dohost serve --watch` when a component file
//! changes) loads and checks every component first, then swaps them all.
//! An event that is running finishes on the code it started with; before
//! its next event each object sees the new generation, drops its instance
//! (its in-memory state goes, as in any reset) and activates on the new
//! code. Storage is untouched.

use std::sync::RwLock;

/// A component's current code and its generation.
pub(crate) struct Code<P> {
    current: RwLock<(u64, P)>,
}

impl<P: Clone> Code<P> {
    pub(crate) fn new(pre: P) -> Code<P> {
        Code {
            current: RwLock::new((0, pre)),
        }
    }

    /// The generation and the code to instantiate.
    pub(crate) fn get(&self) -> (u64, P) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Makes `pre` the current code, in a new generation.
    pub(crate) fn swap(&self, pre: P) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0 + 1, pre);
    }
}
