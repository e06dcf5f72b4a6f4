//! The engine: one wasmtime [`Engine`] for every component of a host.
//!
//! - Components are compiled once, then kept: compiled artifacts are cached on
//!   disk under the data directory (`cache/<hash>.cwasm`, keyed by the
//!   component's bytes and the engine's compatibility hash), so a restart
//!   loads them in milliseconds instead of compiling again.
//! - Instances come from the pooling allocator with copy-on-write memory
//!   initialisation: activating an object is a slot reuse, not an mmap.
//!   The pool is sized from the live-object cap, and refused at start if
//!   the kernel's limit on memory mappings cannot hold it
//!   ([`super::mappings`]). A freed slot keeps the
//!   pages its instance wrote ([`KEEP_RESIDENT`]), reset in place, so the
//!   next instance does not fault them in again (by a page scan only where
//!   no swap is active: see [`page_scan`]).
//! - Each store has a resource limiter ([`GuestMeter`]): linear memory
//!   beyond the per-object limit is refused, so the guest's allocation
//!   fails (a Rust guest aborts, a trap) and the trap says which limit it
//!   hit. It also notes how far the memory has grown: linear memory never
//!   shrinks, so an instance past [`GuestMeter::memory_nearly_full`] is
//!   replaced by a fresh one between events rather than kept until an event
//!   traps on the limit.
//! - A ticker thread advances the engine's epoch every [`EPOCH_TICK`]; a guest
//!   running past its tick yields to the async runtime, and one that runs past
//!   its CPU budget for the event traps (see [`cpu_deadline`]).
//! - WASI is linked with no preopened directories, no sockets, no host
//!   environment and no arguments; stdout and stderr are captured per store.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ProfilingStrategy, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::code::ComponentSource;
use super::guest::GuestState;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Task;
use crate::telemetry::GUEST_TARGET;

/// How often the epoch advances. A running guest yields to other tasks at
/// least this often, and CPU time per event is counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many bytes of a guest's recent stdout/stderr are kept to explain a
/// trap (a panic message, say) in the error it causes.
const OUTPUT_TAIL_BYTES: usize = 4096;

/// The most bytes of a memory (and of a table) a free slot keeps resident
/// for its next instance. A JavaScript object writes about a megabyte while
/// it activates; keeping those pages saves their faults (about a fifth of
/// its activation) at the cost of that much memory per slot once used.
const KEEP_RESIDENT: usize = 2 << 20;

/// Engine-wide limits, fixed when the engine is made.
#[derive(Clone, Debug)]
pub(crate) struct EngineLimits {
    /// The linear memory of all instances together.
    pub(crate) total_memory: usize,
    pub(crate) max_live_objects: u32,
    /// Instance slots kept beyond the live-object cap, for the entry
    /// worker.
    pub(crate) worker_slots: u32,
    pub(crate) memory_per_instance: usize,
}

/// The engine and its linkers, shared by every namespace of a host.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    memory_per_instance: usize,
    /// The linear memory of all instances together.
    pub(crate) memory: Arc<MemoryBudget>,
    cache_dir: PathBuf,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Core instances the pool allows per instance slot, on average.
const CORE_INSTANCES_PER_SLOT: u32 = 16;

impl Runtime {
    pub(crate) fn new(limits: &EngineLimits, cache_dir: PathBuf) -> Result<Runtime> {
        let slots = limits.max_live_objects.saturating_add(limits.worker_slots);
        super::mappings::check(slots, limits.max_live_objects)?;
        let mut pool = PoolingAllocationConfig::new();
        // Core instances are only counted (their metadata is allocated on
        // use): enough for a Python guest's in every slot (componentize-py
        // links CPython, libc and their shims: 14 core instances).
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_SLOT))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_memory_size(limits.memory_per_instance)
            .total_gc_heaps(0)
            // A slot keeps the pages its last instance wrote, reset to the
            // image in place, so the next object of the same component
            // (slots are affine to components) starts without page faults.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(page_scan());
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Guests use the synchronous ABI (events resume through
            // `resume`, wit/events.wit); wasmtime's concurrent machinery,
            // on by default, would route every call through it at about
            // five times the cost (docs/notes/2026-12-outbound-and-concurrency.md).
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_init_cow(true)
            // Reserve only what an instance may use, so thousands of live
            // objects fit in the address space; accesses are bounds-checked.
            .memory_reservation(limits.memory_per_instance as u64)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // For `perf`: names the compiled wasm functions in /tmp/perf-PID.map.
        if std::env::var_os("DOHOST_PERFMAP").is_some() {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        // For counting each event's instructions (see instructions.rs).
        if super::instructions::counting() {
            config.consume_fuel(true);
        }
        let engine = Engine::new(&config).map_err(|e| {
            Error::new(
                ErrorKind::Component,
                format!("cannot create the wasm engine: {e:#}"),
            )
        })?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("dohost-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Error::io("cannot start the epoch thread", e))?;

        Ok(Runtime {
            engine,
            memory_per_instance: limits.memory_per_instance,
            memory: Arc::new(MemoryBudget::new(limits.total_memory)),
            cache_dir,
            ticker_stop,
        })
    }

    /// A linker with WASI (and nothing of the host) added.
    pub(crate) fn linker<T: wasmtime_wasi::WasiView + 'static>(&self) -> Result<Linker<T>> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::new(ErrorKind::Component, format!("linking WASI: {e:#}")))?;
        Ok(linker)
    }

    /// Loads a component, from the on-disk cache when it was compiled before.
    /// `what` names it in errors (e.g. "binding COUNTER").
    pub(crate) fn load(&self, source: &ComponentSource, what: &str) -> Result<Component> {
        let bytes: Bytes = match source {
            ComponentSource::Bytes(b) => Bytes::copy_from_slice(b),
            ComponentSource::File(path) => std::fs::read(path).map(Bytes::from).map_err(|e| {
                Error::new(
                    ErrorKind::Component,
                    format!(
                        "{what}: cannot read component {}: {e}; build it (dohost build) or fix the path",
                        path.display()
                    ),
                )
            })?,
            ComponentSource::RustCrate(dir)
            | ComponentSource::JavaScript(dir)
            | ComponentSource::Python(dir) => {
                return Err(Error::new(
                    ErrorKind::Component,
                    format!(
                        "{what}: {} is a guest that has not been built; run `dohost build` (or dohost::build::build_config) first",
                        dir.display()
                    ),
                ));
            }
        };
        let mut engine_hash = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&engine_hash.finish().to_le_bytes());
        hasher.update(&bytes);
        let cached = self
            .cache_dir
            .join(format!("{}.cwasm", hasher.finalize().to_hex()));

        if let Some(compiled) = load_cached(&cached) {
            // SAFETY: the bytes are those `store_cached` below wrote from
            // `Component::serialize` of this engine configuration (the name
            // includes the compatibility hash), as the recorded hash beside
            // them proves.
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    "{what}: ignoring unusable cached {}: {e:#}",
                    cached.display()
                ),
            }
        }
        let task = Task::start(format!(
            "compiling {what} to native code ({:.1} MB; once, then cached in {})",
            bytes.len() as f64 / 1e6,
            self.cache_dir.display()
        ));
        let component = Component::new(&self.engine, &bytes).map_err(|e| {
            Error::new(
                ErrorKind::Component,
                format!("{what}: not a valid component: {e:#}"),
            )
        })?;
        if let Err(e) = store_cached(&component, &cached) {
            tracing::warn!("{what}: cannot cache the compiled component: {e}");
        }
        task.finish(format!("compiled {what} to native code"));
        Ok(component)
    }
}

/// The file beside a cached `.cwasm` holding the blake3 hash of its bytes.
fn hash_file(path: &Path) -> std::path::PathBuf {
    path.with_extension("cwasm.b3")
}

/// The bytes of a cached compiled component, if the file is there and its
/// hash matches the one recorded when it was written: a damaged or
/// replaced file is compiled again, never loaded.
fn load_cached(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let recorded = std::fs::read_to_string(hash_file(path)).ok()?;
    if blake3::hash(&bytes).to_hex().as_str() == recorded.trim() {
        Some(bytes)
    } else {
        tracing::warn!(
            "{} does not match its recorded hash: compiling the component again",
            path.display()
        );
        None
    }
}

/// Writes a compiled component and its hash into the cache, readable by
/// the owner only; a file that could not be written whole is removed.
fn store_cached(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    replace_file(path, &bytes)?;
    replace_file(&hash_file(path), blake3::hash(&bytes).to_hex().as_bytes())
}

/// Writes `contents` to `target` whole or not at all: into a temporary
/// file beside it, renamed over it; the temporary file is removed if that
/// fails.
fn replace_file(target: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    let written = private_file(&tmp, contents).and_then(|()| std::fs::rename(&tmp, target));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `dir` (and its parents) readable by the owner only (0700).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to a new file `path` readable by the owner only (0600).
fn private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A WASI context with nothing of the host in it: no files, no sockets, no
/// environment, no arguments; output goes to `output`.
pub(crate) fn wasi_ctx(output: &GuestOutput) -> wasmtime_wasi::WasiCtx {
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .stdout(output.clone())
        .stderr(output.clone())
        .build()
}

/// The most elements a guest's table may hold (function references:
/// thousands in a large guest).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The share of the memory limit past which an instance is replaced
/// between events ([`GuestMeter::memory_nearly_full`]): three quarters,
/// leaving the last quarter for one event's own needs.
const REPLACE_AT_MEMORY_QUARTERS: usize = 3;

/// The linear memory all live instances hold together, bounded by
/// [`Settings::total_memory_bytes`](crate::settings::Settings::total_memory_bytes).
/// A growth past it first asks idle objects to leave memory.
pub(crate) struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
    /// Asks the least recently used idle object to leave memory; whether
    /// there was one.
    evictor: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl MemoryBudget {
    fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
            evictor: OnceLock::new(),
        }
    }

    /// Sets how to ask an idle object to leave memory.
    pub(crate) fn set_evictor(&self, evict: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.evictor.set(Box::new(evict));
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a new instance would likely not fit: less than
    /// [`ACTIVATION_HEADROOM`] left.
    pub(crate) fn nearly_full(&self) -> bool {
        self.used().saturating_add(ACTIVATION_HEADROOM) > self.limit
    }

    /// The limit, in MiB, for messages.
    pub(crate) fn limit_mib(&self) -> usize {
        self.limit >> 20
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Takes `bytes`, asking idle objects to leave memory while it does
    /// not fit, for up to [`MEMORY_WAIT`]; whether it got them.
    async fn take(&self, bytes: usize) -> bool {
        let deadline = tokio::time::Instant::now() + MEMORY_WAIT;
        loop {
            if self.try_take(bytes) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Objects asked earlier may still be leaving: ask one more and
            // look again shortly.
            if let Some(evict) = self.evictor.get() {
                evict();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The memory an activating instance is assumed to need at first.
const ACTIVATION_HEADROOM: usize = 8 << 20;

/// How long a memory growth waits for idle objects to leave before it is
/// refused.
const MEMORY_WAIT: Duration = Duration::from_secs(1);

/// What a store keeps about its guest's execution: CPU ticks used by the
/// current event, the memory limit, how far the memory has grown and whether
/// it hit the limit, and the guest's captured output. Object and worker
/// stores both hold one.
#[derive(Default)]
pub(crate) struct GuestMeter {
    pub(crate) output: GuestOutput,
    cpu_ticks: u64,
    memory_limit: usize,
    /// The size a refused memory growth asked for.
    memory_refused: Option<usize>,
    /// The size of the guest's largest linear memory.
    memory_size: usize,
    /// The host's budget for all instances' memory, and how much of it
    /// this store holds.
    budget: Option<Arc<MemoryBudget>>,
    accounted: usize,
    /// The last refused growth did not fit the budget of all instances.
    total_refused: bool,
}

impl Drop for GuestMeter {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.accounted);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime::ResourceLimiterAsync for GuestMeter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_refused = Some(desired);
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        if let Some(budget) = &self.budget {
            if !budget.take(more).await {
                self.memory_refused = Some(desired);
                self.total_refused = true;
                return Ok(false);
            }
            self.accounted += more;
        }
        self.memory_size = self.memory_size.max(desired);
        Ok(true)
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl GuestMeter {
    /// Starts counting a new event: no ticks used, no output kept.
    pub(crate) fn begin_event(&mut self) {
        self.cpu_ticks = 0;
        self.memory_refused = None;
        self.total_refused = false;
        self.output.clear();
    }

    /// Whether the guest's memory has grown past three quarters of its
    /// limit. Its instance is then dropped between events and the next
    /// event gets a fresh one: a guest's heap can creep up for good (a
    /// leak, or a fragmented heap: a componentize-js guest's memory grows
    /// by some 100 KB with every request that has a 60 KB header), and
    /// kept, it would trap on the limit in the middle of an event.
    pub(crate) fn memory_nearly_full(&self) -> bool {
        self.memory_size > self.memory_limit / 4 * REPLACE_AT_MEMORY_QUARTERS
    }

    /// The guest's memory size and its limit, in MiB, for a log line.
    pub(crate) fn memory_mib(&self) -> (usize, usize) {
        (self.memory_size >> 20, self.memory_limit >> 20)
    }
}

impl Runtime {
    /// A store for `state` whose guest yields every epoch tick, traps once
    /// an event has used more than `budget` of CPU time, and may not grow
    /// its memory past the per-instance limit.
    pub(crate) fn store<Io: Send + 'static>(
        &self,
        mut state: GuestState<Io>,
        budget: Duration,
    ) -> wasmtime::Store<GuestState<Io>> {
        state.meter.memory_limit = self.memory_per_instance;
        state.meter.budget = Some(self.memory.clone());
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter_async(|state| &mut state.meter);
        store.epoch_deadline_callback(move |mut cx| {
            cpu_deadline(&mut cx.data_mut().meter.cpu_ticks, budget)
        });
        store.set_epoch_deadline(1);
        if super::instructions::counting() {
            // All there is: the count is what has been used of it.
            let _ = store.set_fuel(u64::MAX);
        }
        store
    }
}

/// How a freed slot finds the pages its instance wrote. wasmtime 48 asks
/// the kernel (PAGEMAP_SCAN) for written pages that are present in memory:
/// a written page the kernel has swapped out is neither reset nor
/// decommitted, so the next object in the slot would read the previous
/// one's data. The scan is therefore used only where no swap is active
/// when the host starts; otherwise a slot copies its first
/// [`KEEP_RESIDENT`] bytes back from the image and decommits the rest,
/// which leaves nothing behind.
fn page_scan() -> Enabled {
    let swap = match std::fs::read_to_string("/proc/swaps") {
        Ok(swaps) => swap_active(&swaps),
        // Unreadable where it should be: assume swap.
        Err(_) => cfg!(target_os = "linux"),
    };
    if swap {
        tracing::info!(
            "swap is active: freed instance slots are reset by copying, not by a page scan"
        );
        Enabled::No
    } else {
        Enabled::Auto
    }
}

/// Whether `/proc/swaps` lists any swap device or file under its header.
fn swap_active(proc_swaps: &str) -> bool {
    proc_swaps
        .lines()
        .skip(1)
        .any(|line| !line.trim().is_empty())
}

/// The epoch callback of a store: counts ticks of guest execution in the
/// current event and traps past `budget`; otherwise yields so other tasks on
/// the thread run.
fn cpu_deadline(ticks: &mut u64, budget: Duration) -> wasmtime::Result<UpdateDeadline> {
    *ticks += 1;
    let used = EPOCH_TICK.saturating_mul(u32::try_from(*ticks).unwrap_or(u32::MAX));
    if used > budget {
        return Err(wasmtime::format_err!(
            "the event exceeded its CPU time limit of {} ms",
            budget.as_millis()
        ));
    }
    Ok(UpdateDeadline::Yield(1))
}

/// A guest's stdout and stderr: each line goes to the server's log
/// ([`GuestLog`]) and the last [`OUTPUT_TAIL_BYTES`] are kept to explain a
/// trap. The WASI context holds clones, so where lines go can change after
/// the store is made ([`GuestOutput::direct_to`]).
#[derive(Clone, Default)]
pub(crate) struct GuestOutput(Arc<Mutex<Output>>);

#[derive(Default)]
struct Output {
    tail: VecDeque<u8>,
    log: Option<Arc<GuestLog>>,
}

impl GuestOutput {
    /// Output that goes to `log`.
    pub(crate) fn to_log(log: Arc<GuestLog>) -> GuestOutput {
        let output = GuestOutput::default();
        output.direct_to(log);
        output
    }

    /// Sends the lines written from now on to `log`, with nothing kept.
    pub(crate) fn direct_to(&self, log: Arc<GuestLog>) {
        let mut output = self.lock();
        output.log = Some(log);
        output.tail.clear();
    }

    /// Takes the kept output (lossy UTF-8), leaving it empty.
    pub(crate) fn take(&self) -> String {
        let bytes: Vec<u8> = self.lock().tail.drain(..).collect();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    /// Forgets the kept output.
    pub(crate) fn clear(&self) {
        self.lock().tail.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Output> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most lines of output a guest logs in a second; past it, lines are
/// counted and the next line logged says how many were dropped, so a guest
/// printing in a loop cannot flood the server's log.
pub(crate) const LOGGED_LINES_PER_SECOND: u32 = 100;

/// Where a guest's output lines go: the server's log (target
/// `dohost::guest`, level info) with the object's binding and id, or the
/// worker's name, at most [`LOGGED_LINES_PER_SECOND`] lines a second. An
/// object's log outlives its instances, so a guest that traps in a loop
/// keeps one budget.
pub(crate) struct GuestLog {
    /// The binding, or the worker's name.
    binding: Arc<str>,
    /// The object's id (hex); `None` for a worker.
    object: Option<String>,
    /// The current second: when it began, lines logged, lines dropped.
    window: Mutex<(Instant, u32, u64)>,
}

impl GuestLog {
    /// The log of the object `id_hex` of `binding`.
    pub(crate) fn object(binding: Arc<str>, id_hex: String) -> Arc<GuestLog> {
        Arc::new(GuestLog {
            binding,
            object: Some(id_hex),
            window: Mutex::new((Instant::now(), 0, 0)),
        })
    }

    /// The log of the worker `name`.
    pub(crate) fn worker(name: &str) -> Arc<GuestLog> {
        Arc::new(GuestLog {
            binding: name.into(),
            object: None,
            window: Mutex::new((Instant::now(), 0, 0)),
        })
    }

    /// Logs the lines of `text`, within the rate.
    fn lines(&self, text: &str) {
        for line in text.lines() {
            let dropped = {
                let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
                let (began, logged, dropped) = &mut *window;
                if began.elapsed() >= Duration::from_secs(1) {
                    *began = Instant::now();
                    *logged = 0;
                }
                if *logged == LOGGED_LINES_PER_SECOND {
                    *dropped += 1;
                    continue;
                }
                *logged += 1;
                std::mem::take(dropped)
            };
            if dropped > 0 {
                self.emit(&format!(
                    "({dropped} lines of output dropped: more than {LOGGED_LINES_PER_SECOND} a second)"
                ));
            }
            self.emit(line);
        }
    }

    fn emit(&self, line: &str) {
        match &self.object {
            Some(id) => {
                tracing::info!(target: GUEST_TARGET, binding = %self.binding, object = %id, "{line}");
            }
            None => tracing::info!(target: GUEST_TARGET, worker = %self.binding, "{line}"),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut output = self.lock();
        if let Some(log) = &output.log {
            log.lines(&String::from_utf8_lossy(&bytes));
        }
        let tail = &mut output.tail;
        tail.extend(bytes.iter().copied());
        let excess = tail.len().saturating_sub(OUTPUT_TAIL_BYTES);
        tail.drain(..excess);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

/// Describes a wasmtime error from a guest call for a person: one line
/// saying why (the memory limit if the guest hit it, the CPU limit, the
/// trap), and the detail for the log: the whole error with its backtrace
/// and what the guest last printed (e.g. a panic message).
pub(crate) fn describe_trap(err: &wasmtime::Error, meter: &GuestMeter) -> (String, String) {
    let reason = if let (Some(desired), true) = (meter.memory_refused, meter.total_refused) {
        format!(
            "the instances of this host together reached their memory limit of {} MiB ([limits] total_memory_bytes) when this one asked to grow to {} MiB, and no idle object could leave to make room",
            meter.budget.as_ref().map_or(0, |b| b.limit_mib()),
            desired >> 20
        )
    } else if let Some(desired) = meter.memory_refused {
        format!(
            "the instance reached its memory limit of {} MiB (it asked to grow to {} MiB)",
            meter.memory_limit >> 20,
            desired >> 20
        )
    } else {
        let outer = err.to_string();
        if !outer.starts_with("error while executing") {
            outer
        } else if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            format!("wasm trap: {trap}")
        } else {
            err.root_cause().to_string()
        }
    };
    let reason = reason.lines().next().unwrap_or_default().to_owned();
    let mut detail = format!("{err:?}");
    let printed = meter.output.take();
    if !printed.is_empty() {
        detail.push_str("\nguest output:\n");
        detail.push_str(&printed);
    }
    (reason, detail)
}

/// Classifies an instantiation failure: a full instance pool, or memory the
/// kernel refused (its mapping limit, say), is an overload (retry later,
/// HTTP 503) that names its cause; anything else is a component problem.
pub(crate) fn instantiate_error(err: &wasmtime::Error, context: &str, max_live: u32) -> Error {
    if let Some(why) = super::mappings::refused(err) {
        tracing::warn!("{context}: {why} ({err:#})");
        return Error::new(ErrorKind::Overloaded, format!("{context}: {why}"));
    }
    if err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return Error::new(
            ErrorKind::Overloaded,
            format!(
                "{context}: every instance slot is in use ({max_live} live objects plus the worker instances); idle objects free theirs after the idle timeout, retry later ({err:#})"
            ),
        );
    }
    Error::new(ErrorKind::Component, format!("{context}: {err:#}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cache_file_that_cannot_be_written_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.cwasm");
        // A directory where the file should go: the rename fails.
        std::fs::create_dir_all(target.join("in-the-way")).unwrap();
        assert!(super::replace_file(&target, b"compiled").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["x.cwasm"], "only what was there before");
        // Where it can be written, it is, readable by the owner only.
        let target = dir.path().join("y.cwasm");
        super::replace_file(&target, b"compiled").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"compiled");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    use super::swap_active;

    #[test]
    fn swap_is_active_when_proc_swaps_lists_a_device() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swap_active(header));
        assert!(!swap_active(""));
        assert!(swap_active(&format!(
            "{header}/dev/zram0                               partition\t4194300\t\t0\t\t100\n"
        )));
        assert!(swap_active(&format!(
            "{header}/swapfile                               file\t\t2097148\t\t1024\t\t-2\n"
        )));
    }
}
