//! The SQLite VFS named `dohost`: it gives each object's SQLite connection
//! its [`PageFile`] as the main database file, so SQLite's pages live in
//! redb beside the KV keys and commit with them.
//!
//! SQLite runs with `locking_mode=EXCLUSIVE` and `journal_mode=MEMORY`: one
//! connection per object and no journal file, because durability and
//! atomicity come from redb (an event's pages commit in one redb
//! transaction or not at all). Locks are therefore no-ops, `xSync` has
//! nothing to do, and any other file SQLite asks for (a temporary file, a
//! statement journal) is a buffer in memory.
//!
//! This is written directly against SQLite's C interface (`rusqlite::ffi`):
//! the maintained Rust VFS crate (`sqlite-plugin`) generates its bindings
//! with bindgen at build time, which needs libclang on the building machine.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::{Connection, OpenFlags, ffi};

use crate::pages::{PageFile, WriteError};

/// The SQLite memory (page caches of all objects' connections, mostly) past
/// which SQLite recycles cached pages instead of allocating more; set once
/// per process, when the VFS is registered.
const SQLITE_SOFT_HEAP_LIMIT: i64 = 1 << 30;

/// SQLite's memory in all past which its allocations fail (the statement
/// fails with "out of memory", the host goes on): a quarter of the machine's
/// memory, at least twice the soft limit.
fn sqlite_hard_heap_limit() -> i64 {
    i64::try_from(crate::machine_memory() / 4)
        .unwrap_or(i64::MAX)
        .max(2 * SQLITE_SOFT_HEAP_LIMIT)
}

/// The largest temporary file (a sorter's or a temporary table's) one
/// connection may hold in memory.
const MAX_TEMP_FILE_BYTES: usize = 256 << 20;

/// The name the VFS is registered under.
const VFS_NAME: &CStr = c"dohost";

/// Files waiting for SQLite to open them, by the path handed to SQLite.
static WAITING: OnceLock<Mutex<HashMap<String, Arc<Mutex<PageFile>>>>> = OnceLock::new();

fn waiting() -> MutexGuard<'static, HashMap<String, Arc<Mutex<PageFile>>>> {
    WAITING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Opens a SQLite connection whose main database is `file`.
///
/// # Errors
///
/// SQLite's, if the VFS cannot be registered or the database opened.
pub fn open(file: Arc<Mutex<PageFile>>) -> rusqlite::Result<Connection> {
    register()?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = format!("dohost-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    waiting().insert(path.clone(), file);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_EXRESCODE;
    let conn = Connection::open_with_flags_and_vfs(&path, flags, VFS_NAME);
    waiting().remove(&path);
    conn
}

/// Registers the VFS with SQLite, once per process.
fn register() -> rusqlite::Result<()> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_initialize is safe to call at any time; the default
        // VFS it returns lives for the process. The registered struct is
        // leaked, so it outlives every connection.
        unsafe {
            let rc = ffi::sqlite3_initialize();
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            let default = ffi::sqlite3_vfs_find(ptr::null());
            if default.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let d = &*default;
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: c_int::try_from(size_of::<File>()).unwrap_or(c_int::MAX),
                mxPathname: 512,
                pNext: ptr::null_mut(),
                zName: VFS_NAME.as_ptr(),
                pAppData: ptr::null_mut(),
                xOpen: Some(x_open),
                xDelete: Some(x_delete),
                xAccess: Some(x_access),
                xFullPathname: Some(x_full_pathname),
                // Loading extensions is off; time, sleep and randomness are
                // the operating system's, as in the default VFS.
                xDlOpen: d.xDlOpen,
                xDlError: d.xDlError,
                xDlSym: d.xDlSym,
                xDlClose: d.xDlClose,
                xRandomness: d.xRandomness,
                xSleep: d.xSleep,
                xCurrentTime: d.xCurrentTime,
                xGetLastError: d.xGetLastError,
                xCurrentTimeInt64: d.xCurrentTimeInt64,
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            });
            // Every object's connection keeps a page cache; past this much
            // SQLite memory in all, caches give up pages rather than grow.
            ffi::sqlite3_soft_heap_limit64(SQLITE_SOFT_HEAP_LIMIT);
            ffi::sqlite3_hard_heap_limit64(sqlite_hard_heap_limit());
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0);
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(rc)
            }
        }
    });
    result.map_err(|rc| rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None))
}

/// What a SQLite file handle of this VFS points at.
enum Backing {
    /// The object's database.
    Database(Arc<Mutex<PageFile>>),
    /// A temporary file or statement journal.
    Memory(Vec<u8>),
}

/// The file handle SQLite allocates (`szOsFile` bytes) and `x_open` fills.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    backing: *mut Backing,
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

fn lock(file: &Mutex<PageFile>) -> MutexGuard<'_, PageFile> {
    file.lock().unwrap_or_else(|p| p.into_inner())
}

/// The backing of an open handle.
///
/// # Safety
/// `file` must be a handle `x_open` opened and `x_close` has not closed.
unsafe fn backing<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Backing {
    // SAFETY: per the contract, `file` is a `File` whose `backing` came from
    // `Box::into_raw`; SQLite never uses one handle from two threads at once.
    unsafe { &mut *(*file.cast::<File>()).backing }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let file = file.cast::<File>();
    // SAFETY: the handle's memory is ours to fill; a failed open must leave
    // no methods, so SQLite does not close it.
    unsafe { ptr::addr_of_mut!((*file).base.pMethods).write(ptr::null()) };
    let backing = if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        if name.is_null() {
            return ffi::SQLITE_CANTOPEN;
        }
        // SAFETY: SQLite passes a NUL-terminated name for a main database.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        match waiting().get(name.as_ref()) {
            Some(pages) => Backing::Database(pages.clone()),
            None => return ffi::SQLITE_CANTOPEN,
        }
    } else {
        Backing::Memory(Vec::new())
    };
    // SAFETY: SQLite hands us `szOsFile` writable bytes for the handle.
    unsafe {
        file.write(File {
            base: ffi::sqlite3_file {
                pMethods: &IO_METHODS,
            },
            backing: Box::into_raw(Box::new(backing)),
        });
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_: *mut ffi::sqlite3_vfs, _: *const c_char, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _: *mut ffi::sqlite3_vfs,
    _: *const c_char,
    _: c_int,
    out: *mut c_int,
) -> c_int {
    // No journal or WAL file ever exists.
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is NUL-terminated and `out` has room for `n_out` bytes.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > usize::try_from(n_out).unwrap_or(0) {
            return ffi::SQLITE_CANTOPEN;
        }
        ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let file = file.cast::<File>();
    // SAFETY: the handle was opened by `x_open`; SQLite closes it once.
    unsafe {
        let backing = std::mem::replace(&mut (*file).backing, ptr::null_mut());
        if !backing.is_null() {
            drop(Box::from_raw(backing));
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open handle, and a buffer of `amount` bytes.
    let (backing, buf) = unsafe {
        (
            backing(file),
            std::slice::from_raw_parts_mut(buf.cast::<u8>(), usize::try_from(amount).unwrap_or(0)),
        )
    };
    let offset = u64::try_from(offset).unwrap_or(0);
    let full = match backing {
        Backing::Database(pages) => match lock(pages).read(offset, buf) {
            Ok(full) => full,
            Err(_) => return ffi::SQLITE_IOERR_READ,
        },
        Backing::Memory(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let n = (bytes.len() - start).min(buf.len());
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            buf[n..].fill(0);
            n == buf.len()
        }
    };
    if full {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_IOERR_SHORT_READ
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open handle, and `amount` readable bytes.
    let (backing, data) = unsafe {
        (
            backing(file),
            std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(amount).unwrap_or(0)),
        )
    };
    let offset = u64::try_from(offset).unwrap_or(0);
    match backing {
        Backing::Database(pages) => match lock(pages).write(offset, data) {
            Ok(()) => ffi::SQLITE_OK,
            Err(WriteError::Full | WriteError::EventTooLarge) => ffi::SQLITE_FULL,
            Err(WriteError::Read) => ffi::SQLITE_IOERR_WRITE,
        },
        Backing::Memory(bytes) => {
            let Ok(start) = usize::try_from(offset) else {
                return ffi::SQLITE_FULL;
            };
            let end = start + data.len();
            if end > MAX_TEMP_FILE_BYTES {
                return ffi::SQLITE_FULL;
            }
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(data);
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open handle.
    let backing = unsafe { backing(file) };
    let size = u64::try_from(size).unwrap_or(0);
    match backing {
        Backing::Database(pages) => match lock(pages).truncate(size) {
            Ok(()) => ffi::SQLITE_OK,
            Err(WriteError::Full | WriteError::EventTooLarge) => ffi::SQLITE_FULL,
            Err(WriteError::Read) => ffi::SQLITE_IOERR_TRUNCATE,
        },
        Backing::Memory(bytes) => {
            bytes.resize(usize::try_from(size).unwrap_or(0), 0);
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_sync(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open handle and a valid out pointer.
    let backing = unsafe { backing(file) };
    let len = match backing {
        Backing::Database(pages) => match lock(pages).size() {
            Ok(len) => len,
            Err(_) => return ffi::SQLITE_IOERR_FSTAT,
        },
        Backing::Memory(bytes) => bytes.len() as u64,
    };
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *size = ffi::sqlite3_int64::try_from(len).unwrap_or(ffi::sqlite3_int64::MAX) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite passes a valid out pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(_: *mut ffi::sqlite3_file, _: c_int, _: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_: *mut ffi::sqlite3_file) -> c_int {
    crate::pages::PAGE_SIZE as c_int
}

unsafe extern "C" fn x_device_characteristics(_: *mut ffi::sqlite3_file) -> c_int {
    0
}
