//! The kernel's limit on memory mappings, which bounds how many instances
//! the pool can hold.
//!
//! Linux allows a process `vm.max_map_count` mappings (65,530 by default
//! on many distributions, 1,048,576 on newer ones). The instance pool
//! takes them per slot, not per byte: every slot's fiber stack is a
//! mapping and its guard page another, made when the pool is; a live
//! linear memory splits its slot into up to four (the accessible pages
//! below the copy-on-write image, the image, the accessible pages above
//! it, the inaccessible rest). Past the limit the kernel refuses the next
//! `mmap` or `mprotect` with `ENOMEM`, so activations would fail one by one
//! once enough objects are live. The host therefore checks at start that
//! every slot it configures fits ([`check`]), and an activation refused
//! anyway says why ([`refused`]).

use crate::error::{Error, ErrorKind};

/// Mappings one instance slot may take: its fiber stack and the stack's
/// guard page, and a live linear memory split in four around its image
/// (Rust and JavaScript guests have one linear memory).
pub(crate) const MAPPINGS_PER_SLOT: u64 = 6;

/// Mappings left for the rest of the process: its code and libraries,
/// threads' stacks, the allocator's arenas, redb's and SQLite's files,
/// compiled components.
const MAPPINGS_BESIDE_SLOTS: u64 = 2_000;

/// `ENOMEM`, the kernel's "Cannot allocate memory", on Linux.
const ENOMEM: i32 = 12;

/// Where Linux publishes the limit.
const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// Refuses a pool of `slots` instance slots (`max_live_objects` of them
/// for objects) that the kernel's mapping limit cannot hold, naming the
/// limit, what the configuration needs and the two ways out. Where the
/// limit cannot be read (not Linux), nothing is checked.
///
/// It checks the configuration, not the process: a program that embeds
/// several hosts (a test suite, say) shares the limit among them, and
/// those that fill their pools meet [`refused`]'s error instead.
///
/// # Errors
///
/// [`ErrorKind::Config`] when the slots would need more mappings than
/// `vm.max_map_count` allows.
pub(crate) fn check(slots: u32, max_live_objects: u32) -> Result<(), Error> {
    let Some(limit) = read_limit() else {
        return Ok(());
    };
    check_against(slots, max_live_objects, limit)
}

/// [`check`] against a known `limit`.
fn check_against(slots: u32, max_live_objects: u32, limit: u64) -> Result<(), Error> {
    let beside = MAPPINGS_BESIDE_SLOTS;
    let needed = u64::from(slots)
        .saturating_mul(MAPPINGS_PER_SLOT)
        .saturating_add(beside);
    if needed <= limit {
        return Ok(());
    }
    let others = slots.saturating_sub(max_live_objects);
    let fits = (limit.saturating_sub(beside) / MAPPINGS_PER_SLOT).saturating_sub(u64::from(others));
    // Room for the slots and as much again, rounded up to a power of two,
    // as distributions set it.
    let suggest = needed.saturating_mul(2).next_power_of_two();
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "[limits] max_live_objects = {max_live_objects} needs about {needed} memory mappings \
             ({MAPPINGS_PER_SLOT} per live object, for {slots} instance slots with the worker's), \
             more than the kernel allows a process (vm.max_map_count = {limit}); \
             raise the kernel's limit (`sysctl -w vm.max_map_count={suggest}`, and a file in \
             /etc/sysctl.d/ to keep it) or set max_live_objects to at most {fits}"
        ),
    ))
}

/// Why the kernel refused memory to an activation (`ENOMEM`), if it did:
/// the mapping limit, named with the mappings the process holds, or memory
/// itself.
pub(crate) fn refused(err: &wasmtime::Error) -> Option<String> {
    let enomem = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(ENOMEM))
            || cause.to_string().contains("(os error 12)")
    });
    if !enomem {
        return None;
    }
    Some(match (read_limit(), mappings_now()) {
        (Some(limit), Some(held)) if held.saturating_add(MAPPINGS_PER_SLOT * 4) >= limit => {
            format!(
                "the kernel refused a memory mapping: the process holds {held} of the \
                 {limit} the kernel allows (vm.max_map_count); raise it (`sysctl -w \
                 vm.max_map_count={}`) or lower [limits] max_live_objects",
                limit.saturating_mul(2).next_power_of_two()
            )
        }
        _ => "the kernel refused memory for the instance (out of memory); lower [limits] \
              max_live_objects or total_memory_bytes"
            .to_owned(),
    })
}

/// The kernel's limit on a process's mappings, where it says.
fn read_limit() -> Option<u64> {
    std::fs::read_to_string(MAX_MAP_COUNT)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The mappings this process holds now, where the kernel lists them.
fn mappings_now() -> Option<u64> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}

#[cfg(test)]
mod tests {
    use super::{MAPPINGS_PER_SLOT, check_against};

    #[test]
    fn a_pool_that_fits_the_mapping_limit_is_accepted() {
        assert!(check_against(10_264, 10_000, 65_530).is_ok());
    }

    #[test]
    fn a_pool_past_the_mapping_limit_names_the_limit_and_the_fixes() {
        let err = check_against(20_020, 20_000, 65_530).unwrap_err();
        let text = err.to_string();
        for needle in [
            "max_live_objects = 20000",
            "vm.max_map_count = 65530",
            "sysctl -w vm.max_map_count=262144",
            "at most 10568",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
        // What it suggests fits.
        let fits = (65_530 - 2_000) / MAPPINGS_PER_SLOT - 20;
        assert_eq!(fits, 10_568);
        assert!(check_against(fits as u32 + 20, fits as u32, 65_530).is_ok());
        assert!(check_against(fits as u32 + 21, fits as u32 + 1, 65_530).is_err());
    }
}
