//! Logs and traces: structured logs on stdout (JSON or text; colour only on a terminal),
//! levels from `RUST_LOG` with other crates kept at `info` unless named, one span per
//! request exported to OTLP/HTTP (plain or TLS, see [`crate::otlp`]) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C
//! `traceparent` carried from the caller to Graph.

use std::ffi::OsStr;
use std::io::IsTerminal;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How traces leave the process.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Full URL of the traces endpoint (`.../v1/traces`); `None` lets the exporter read
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (and append `/v1/traces`) itself.
    pub traces_endpoint: Option<String>,
    /// `service.name` (from `OTEL_SERVICE_NAME`, default `graphgate`).
    pub service_name: String,
    /// TLS to the collector (an `https://` endpoint): its CAs and a client certificate.
    pub tls: crate::otlp::OtlpTls,
}

/// Longest one export of spans may take.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub use crate::otlp::ExportSetupError;

/// Keeps the exporter alive; flush it on the way out.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// A tracer provider exporting OTLP/HTTP protobuf with the Tokio batch processor.
/// Call within a Tokio runtime.
pub fn tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, ExportSetupError> {
    let client = crate::otlp::http_client(&config.tls, EXPORT_TIMEOUT)?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = &config.traces_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter = builder.build()?;
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// The filter for exported spans: graphgate's own, at info, whatever `RUST_LOG` says.
pub fn span_filter() -> Targets {
    Targets::new().with_target("graphgate", tracing::Level::INFO)
}

/// This crate's log target (every module's target starts with it).
const OWN_TARGET: &str = "graphgate";

/// The log filter for a `RUST_LOG` value. A bare level (`debug`, `trace`) is graphgate's
/// own; other crates stay at `info` (or that level, if quieter) unless a directive names
/// them (`RUST_LOG=trace,hyper=debug`). Without this, `RUST_LOG=trace` turned on the file
/// watcher's trace line for every change in the policy's directory, so a log file written
/// there fed on itself. An unusable value is reported and replaced by `info`.
pub fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let mut own = None;
    let mut named = Vec::new();
    for directive in rust_log.unwrap_or_default().split(',').map(str::trim) {
        match directive.parse::<LevelFilter>() {
            _ if directive.is_empty() => {}
            Ok(level) => own = Some(level),
            Err(_) => named.push(directive),
        }
    }
    let others = own.map_or(LevelFilter::INFO, |l| l.min(LevelFilter::INFO));
    let names_own = named
        .iter()
        .any(|d| d.split(['=', '[']).next() == Some(OWN_TARGET));
    let mut directives = vec![others.to_string()];
    if let (Some(level), false) = (own, names_own) {
        directives.push(format!("{OWN_TARGET}={level}"));
    }
    directives.extend(named.iter().map(|d| (*d).to_owned()));
    EnvFilter::try_new(directives.join(",")).unwrap_or_else(|e| {
        eprintln!("graphgate: RUST_LOG is not usable ({e}); logging at info");
        EnvFilter::new("info")
    })
}

/// Whether text logs are coloured: only when they go to a terminal, and never with
/// `NO_COLOR` set to anything but empty (<https://no-color.org>). A file or a log collector
/// gets plain text.
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// What logging reads from the environment.
#[derive(Debug, Clone, Default)]
pub struct LogEnv {
    /// `RUST_LOG`.
    pub rust_log: Option<String>,
    /// `NO_COLOR`.
    pub no_color: Option<std::ffi::OsString>,
}

/// Installs logging (and tracing export, if configured) for the process.
pub fn init(
    json: bool,
    env: &LogEnv,
    otlp: Option<OtlpConfig>,
) -> Result<Telemetry, ExportSetupError> {
    let filter = log_filter(env.rust_log.as_deref());
    let colour = use_colour(std::io::stdout().is_terminal(), env.no_color.as_deref());
    let logs = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed()
    };
    let provider = otlp.as_ref().map(tracer_provider).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("graphgate"))
            .with_filter(span_filter())
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(key),
            HeaderValue::try_from(value.as_str()),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the caller's W3C trace context, if it sent a valid one.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// Adds `traceparent` (and `tracestate`) for the current span to an outgoing request.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an event at `$level` from `$target` would be logged under `$filter`.
    macro_rules! logs {
        ($filter:expr, $target:literal, $level:ident) => {{
            let subscriber = tracing_subscriber::registry().with(log_filter($filter));
            tracing::subscriber::with_default(subscriber, || {
                tracing::enabled!(target: $target, tracing::Level::$level)
            })
        }};
    }

    #[test]
    fn a_bare_level_is_graphgates_and_other_crates_stay_at_info_unless_named() {
        for unset in [None, Some(""), Some("not a=directive=at all")] {
            assert!(logs!(unset, "graphgate::reload", INFO));
            assert!(!logs!(unset, "graphgate::reload", DEBUG));
            assert!(logs!(unset, "notify::inotify", INFO));
        }
        // The case: trace for graphgate, and the watcher's trace lines stay off.
        assert!(logs!(Some("trace"), "graphgate::reload", TRACE));
        assert!(logs!(Some("TRACE"), "graphgate", TRACE));
        assert!(!logs!(Some("trace"), "notify::inotify", DEBUG));
        assert!(logs!(Some("trace"), "notify::inotify", INFO));
        assert!(!logs!(Some("debug"), "hyper::proto", DEBUG));
        // Named, a crate gets what it asks for.
        assert!(logs!(Some("trace,notify=trace"), "notify::inotify", TRACE));
        assert!(logs!(Some("hyper=debug"), "hyper::proto", DEBUG));
        assert!(!logs!(Some("hyper=debug"), "graphgate", DEBUG));
        // Quieter than info applies to everyone.
        assert!(!logs!(Some("warn"), "graphgate", INFO));
        assert!(!logs!(Some("warn"), "notify::inotify", INFO));
        assert!(logs!(Some("warn"), "notify::inotify", WARN));
        // A directive naming graphgate is the user's, not overridden by the bare level.
        assert!(!logs!(
            Some("trace,graphgate=info"),
            "graphgate::reload",
            DEBUG
        ));
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsStr::new(""))),
            "empty NO_COLOR is unset"
        );
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None), "a file or a pipe gets plain text");
    }
}
