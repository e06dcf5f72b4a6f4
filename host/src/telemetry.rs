//! Traces over OpenTelemetry: the event spans (see `runtime/trace.rs`:
//! one `event` span per event with its binding, class, object id, kind and
//! gate timings) exported to an OTLP/HTTP collector
//! (`[observability] otlp_endpoint`).
//!
//! [`otlp_layer`] makes a `tracing` layer that exports those spans, with
//! what guests printed while they ran as span events; `dohost serve` adds
//! it to its subscriber when the configuration names an endpoint. An
//! embedder adds it to its own subscriber the same way.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! # fn run() -> dohost::Result<()> {
//! let (layer, export) = dohost::telemetry::otlp_layer("http://127.0.0.1:4318")?;
//! tracing_subscriber::registry().with(layer).init();
//! // ... run the host; then, to send what is left:
//! export.shutdown();
//! # Ok(()) }
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::error::{Error, ErrorKind, Result};

/// The target of the event spans (debug level).
pub(crate) const EVENT_TARGET: &str = "dohost::event";

/// The target of what guests print (info level).
pub(crate) const GUEST_TARGET: &str = "dohost::guest";

/// The name dohost's spans carry as their `service.name`.
const SERVICE_NAME: &str = "dohost";

/// The export of spans to a collector: batches go from a thread of their
/// own. [`OtlpExport::shutdown`] sends what is left.
#[derive(Debug)]
pub struct OtlpExport {
    provider: SdkTracerProvider,
}

impl OtlpExport {
    /// Sends the spans not yet exported and stops the export.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("the OTLP export of traces did not end cleanly: {e}");
        }
    }
}

/// A layer that exports the event spans (target `dohost::event`) and the
/// guests' output (`dohost::guest`) to the OTLP/HTTP collector at
/// `endpoint` (e.g. `http://127.0.0.1:4318`; spans go to its
/// `/v1/traces`), and the export that sends them.
///
/// # Errors
///
/// [`ErrorKind::Config`] if the exporter cannot be made from `endpoint`.
pub fn otlp_layer<S>(endpoint: &str) -> Result<(impl Layer<S>, OtlpExport)>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot export traces to {url}: {e}"),
            )
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let spans = Targets::new()
        .with_target(EVENT_TARGET, LevelFilter::DEBUG)
        .with_target(GUEST_TARGET, LevelFilter::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans);
    Ok((layer, OtlpExport { provider }))
}
