//! What operators see besides the metrics: one `tracing` span per event
//! with the time it waited at the input gate, ran and waited at the output
//! gate (read by a test subscriber from a library host), those spans
//! exported over OTLP/HTTP to a collector (`[observability]
//! otlp_endpoint`), and what guests print in the server's log with their
//! binding and id, at most 100 lines a second per object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use prost::Message;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::outside::Outside;
use crate::support::{
    Server, client, get, get_json, guests, library_host, probe_stub, request, write_config,
};

/// A span's fields as text.
#[derive(Clone, Debug, Default)]
struct Fields(BTreeMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    fn micros(&self, name: &str) -> u64 {
        self.get(name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number of microseconds: {self:?}"))
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

/// A subscriber layer that keeps the fields of every `event` span when it
/// closes.
struct Capture(Arc<Mutex<Vec<Fields>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && span.name() == "event"
            && let Some(fields) = span.extensions().get::<Fields>()
        {
            self.0.lock().unwrap().push(fields.clone());
        }
    }
}

#[test]
fn each_event_has_a_span_with_its_input_gate_run_and_output_gate_times() {
    let closed: Arc<Mutex<Vec<Fields>>> = Arc::default();
    let only_events = Targets::new().with_target("dohost::event", tracing::Level::DEBUG);
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(Capture(closed.clone()).with_filter(only_events)),
    );
    // The subscriber of this test alone: the default of its threads, not
    // of the process (other tests run beside it).
    let _main = tracing::dispatcher::set_default(&dispatch);
    let threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&threads)))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = runtime.block_on(async {
        let host = library_host(dir.path()).build().unwrap();
        let stub = probe_stub(&host, "traced");
        // A write: its answer waits at the output gate for the commit.
        let put = stub.fetch(request("PUT", "/kv/a", "1")).await.unwrap();
        assert_eq!(put.status(), 200);
        let closed_fetches = || {
            let closed = closed.lock().unwrap();
            closed.iter().filter(|f| f.get("kind") == "fetch").count()
        };
        while closed_fetches() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Two requests at once: the second waits at the input gate while
        // the first spins for 300 ms in one turn.
        let spinning = tokio::spawn({
            let stub = stub.clone();
            async move { stub.fetch(request("GET", "/spin/300", "")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let read = stub.fetch(request("GET", "/kv/a", "")).await.unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(spinning.await.unwrap().unwrap().status(), 200);
        let whoami = stub.fetch(request("GET", "/whoami", "")).await.unwrap();
        let whoami: serde_json::Value = serde_json::from_slice(whoami.body()).unwrap();
        host.shutdown().await;
        whoami["id"].as_str().unwrap().to_owned()
    });
    drop(runtime);
    let spans = closed.lock().unwrap().clone();
    let fetches: Vec<&Fields> = spans.iter().filter(|f| f.get("kind") == "fetch").collect();
    assert_eq!(fetches.len(), 4, "one span per event: {spans:#?}");
    for span in &fetches {
        assert_eq!(span.get("binding"), "PROBE", "{span:?}");
        assert_eq!(span.get("class"), "Probe", "{span:?}");
        assert_eq!(span.get("object"), id, "{span:?}");
        assert_eq!(span.get("turns"), "1", "{span:?}");
        span.micros("input_gate_us");
        span.micros("output_gate_us");
    }
    assert!(
        spans.iter().any(|f| f.get("kind") == "constructor"),
        "the activation has its span: {spans:#?}"
    );
    let put = fetches[0];
    // The spin ran longest; the read waited longest of the others.
    let spin = *fetches[1..]
        .iter()
        .max_by_key(|f| f.micros("run_us"))
        .unwrap();
    let read = *fetches[1..]
        .iter()
        .filter(|f| !std::ptr::eq(**f, spin))
        .max_by_key(|f| f.micros("input_gate_us"))
        .unwrap();
    assert!(
        put.micros("output_gate_us") > 0,
        "the write's answer waited for its commit: {put:?}"
    );
    assert!(
        spin.micros("run_us") >= 250_000,
        "the spin ran 300 ms: {spin:?}"
    );
    assert!(
        read.micros("input_gate_us") >= 150_000,
        "the read waited behind the spin: {read:?}"
    );
    assert!(read.micros("run_us") < 100_000, "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_spans_go_to_an_otlp_collector_and_guest_output_to_the_log_at_a_bounded_rate() {
    let collector = Outside::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[durable_objects.bindings]]\nname = \"PROBE\"\nclass_name = \"Probe\"\ncomponent = {:?}\n\
             [observability]\notlp_endpoint = {:?}\n",
            guests().probe,
            collector.url("")
        ),
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let client = client();

    let id = get_json(&client, &server.url("/PROBE/p/whoami")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(&client, &server.url("/PROBE/p/print/3")).await;
    assert_eq!((status, body.as_str()), (200, "printed 3"));
    let log = server.log_with("probe line 3");
    let line = log
        .lines()
        .find(|l| l.contains("probe line 1"))
        .unwrap_or_else(|| panic!("the guest's output is in the log:\n{log}"));
    assert!(
        line.contains("binding=PROBE") && line.contains(&format!("object={id}")),
        "{line}"
    );

    // A flood: 100 lines a second reach the log, and the next line logged
    // says how many did not.
    let flood = get_json(&client, &server.url("/PROBE/flood/whoami")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = get(&client, &server.url("/PROBE/flood/print/300")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = get(&client, &server.url("/PROBE/flood/print/1")).await;
    assert_eq!(status, 200);
    let log = server.log_with("200 lines of output dropped");
    let flooded = log
        .lines()
        .filter(|l| l.contains("probe line") && l.contains(&format!("object={flood}")))
        .count();
    assert_eq!(flooded, 101, "{log}");
    assert!(
        log.contains("(200 lines of output dropped: more than 100 a second)"),
        "{log}"
    );

    // Stopping sends the spans left; the collector has the events'.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans: Vec<_> = collector
            .seen_path("/v1/traces")
            .iter()
            .flat_map(|seen| {
                ExportTraceServiceRequest::decode(seen.body.clone())
                    .expect("an OTLP protobuf export")
                    .resource_spans
            })
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        if !spans.is_empty() || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.clone())
    };
    let text = |value: Option<OtlpValue>| match value {
        Some(OtlpValue::StringValue(s)) => s,
        Some(OtlpValue::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    };
    let printed = spans
        .iter()
        .find(|s| {
            s.name == "event"
                && text(attribute(s, "object")) == id
                && s.events.iter().any(|e| e.name.contains("probe line 2"))
        })
        .unwrap_or_else(|| panic!("the print event's span, with what it printed: {spans:#?}"));
    assert_eq!(text(attribute(printed, "binding")), "PROBE");
    assert_eq!(text(attribute(printed, "kind")), "fetch");
    for timing in ["input_gate_us", "run_us", "output_gate_us"] {
        assert!(
            matches!(attribute(printed, timing), Some(OtlpValue::IntValue(_))),
            "{timing}: {printed:#?}"
        );
    }
}
