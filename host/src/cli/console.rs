//! The binary's stderr: its own lines, the log, and the library's progress
//! tasks ([`dohost::progress`]).
//!
//! On a terminal each running task is a spinner line with what it does, how
//! long it has run and the tool's latest line; when it ends the spinner
//! gives way to one line with the outcome and the time taken. Elsewhere (a
//! pipe, a file, a supervisor's log) a task is two plain lines, its start
//! and its outcome, with the tool's output indented between them. Every
//! other line passes through the same place, so nothing is drawn over a
//! spinner.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// How often a spinner turns.
const TICK: Duration = Duration::from_millis(120);

/// Where the binary writes: spinners on a terminal, plain lines otherwise.
#[derive(Clone)]
pub struct Console {
    /// The spinners, when stderr is a terminal.
    bars: Option<MultiProgress>,
}

static CONSOLE: OnceLock<Console> = OnceLock::new();

/// The process's console.
pub fn console() -> &'static Console {
    CONSOLE.get_or_init(|| Console {
        bars: std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
    })
}

impl Console {
    /// Writes `dohost: {text}` on its own line.
    pub fn line(&self, text: &str) {
        self.write_raw(format!("dohost: {text}\n").as_bytes());
    }

    /// Writes `bytes` to stderr, with the spinners out of the way.
    fn write_raw(&self, bytes: &[u8]) {
        let write = || {
            let _ = std::io::stderr().write_all(bytes);
        };
        match &self.bars {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

/// The log's writer: each formatted event through [`Console::write_raw`].
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        console().write_raw(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the log (filtered by `RUST_LOG`, `info` by default; the event
/// spans with `RUST_LOG=dohost::event=debug`) and the progress rendering
/// as the process's tracing subscriber. With `otlp_endpoint`
/// (`[observability]` of the configuration `serve` runs), the event spans
/// and the guests' output are exported there too; the export returned
/// sends what is left at the end.
pub fn init_tracing(
    otlp_endpoint: Option<&str>,
) -> dohost::Result<Option<dohost::telemetry::OtlpExport>> {
    // Filters that state their most verbose level (no `filter_fn`), so a
    // debug or trace callsite no layer wants costs one level comparison on
    // the hot path, not a call into each filter.
    let no_progress = format!("{}=off", dohost::progress::TARGET)
        .parse()
        .expect("a valid directive");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(no_progress);
    let log = tracing_subscriber::fmt::layer()
        .with_writer(|| LogWriter)
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let progress = ProgressLayer.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(dohost::progress::TARGET, tracing::Level::INFO),
    );
    let subscriber = tracing_subscriber::registry().with(log).with(progress);
    match otlp_endpoint {
        Some(endpoint) => {
            let (otlp, export) = dohost::telemetry::otlp_layer(endpoint)?;
            subscriber.with(otlp).init();
            Ok(Some(export))
        }
        None => {
            subscriber.init();
            Ok(None)
        }
    }
}

/// A running task, kept in its span.
struct TaskState {
    task: String,
    started: Instant,
    outcome: Option<String>,
    bar: Option<ProgressBar>,
}

/// The fields of a progress span or event.
#[derive(Default)]
struct Fields {
    task: Option<String>,
    line: Option<String>,
    outcome: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let slot = match field.name() {
            "task" => &mut self.task,
            "line" => &mut self.line,
            "outcome" => &mut self.outcome,
            _ => return,
        };
        *slot = Some(format!("{value:?}"));
    }
}

/// Renders [`dohost::progress`] spans and events on the [`console`].
struct ProgressLayer;

impl<S> Layer<S> for ProgressLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let task = fields.task.unwrap_or_default();
        let bar = match &console().bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new_spinner());
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} {prefix} [{elapsed}]\n  {wide_msg:.dim}",
                ) {
                    bar.set_style(style);
                }
                bar.set_prefix(task.clone());
                bar.enable_steady_tick(TICK);
                Some(bar)
            }
            None => {
                console().line(&format!("{task} ..."));
                None
            }
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(TaskState {
                task,
                started: Instant::now(),
                outcome: None,
                bar,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx.event_span(event);
        let mut extensions = span.as_ref().map(|s| s.extensions_mut());
        let state = extensions.as_mut().and_then(|e| e.get_mut::<TaskState>());
        match (state, fields.outcome, fields.line) {
            (Some(state), Some(outcome), _) => state.outcome = Some(outcome),
            // Blank lines say nothing.
            (_, None, Some(line)) if line.trim().is_empty() => {}
            (Some(TaskState { bar: Some(bar), .. }), None, Some(line)) => bar.set_message(line),
            (_, None, Some(line)) => {
                console().write_raw(format!("dohost:   | {line}\n").as_bytes())
            }
            (None, Some(outcome), None) => console().line(&outcome),
            _ => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<TaskState>() else {
            return;
        };
        if let (Some(bar), Some(bars)) = (&state.bar, &console().bars) {
            bar.finish_and_clear();
            bars.remove(bar);
        }
        let seconds = state.started.elapsed().as_secs_f64();
        match state.outcome {
            Some(outcome) => console().line(&format!("{outcome} (in {seconds:.1} s)")),
            None => console().line(&format!("{}: stopped after {seconds:.1} s", state.task)),
        }
    }
}
