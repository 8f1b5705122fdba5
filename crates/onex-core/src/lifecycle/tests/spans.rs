//! The wrapper emits one `handler.execute` span per call, carrying handler type, operation,
//! correlation id and attempts. Checked with a minimal recording subscriber (onex-core has no
//! tracing-subscriber dependency).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::initialized;
use super::scripted::{Scripted, Step};
use crate::resilience::RetryPolicy;
use crate::{Error, OperationConfig, ProtocolHandler, ProtocolRequest};

type Fields = BTreeMap<String, String>;

type Spans = Arc<Mutex<Vec<(String, Fields)>>>;

/// Records every span's name and fields; span ids are 1-based indexes into `spans`.
struct Recorder {
    spans: Spans,
}

struct FieldWriter<'a>(&'a mut Fields);

impl Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        span.record(&mut FieldWriter(&mut fields));
        let mut spans = self.spans.lock();
        spans.push((span.metadata().name().to_string(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock();
        if let Some((_, fields)) = spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut FieldWriter(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_call_gets_a_span_with_type_operation_correlation_and_attempts() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Recorder { spans: spans.clone() });
    let inner = Arc::new(Scripted::with_steps([Step::Fail(Error::unavailable("503")), Step::Ok]));
    let handler = initialized(inner).await;
    let correlation = uuid::Uuid::now_v7();
    let op = OperationConfig { retry: RetryPolicy { jitter: false, ..Default::default() }, ..Default::default() };
    handler.execute(ProtocolRequest::new("GET", "/users/1").with_correlation_id(correlation), &op).await.unwrap();
    let spans = spans.lock();
    let calls: Vec<_> = spans.iter().filter(|(name, _)| name == "handler.execute").collect();
    assert_eq!(calls.len(), 1, "one span per call, not per attempt: {spans:?}");
    let fields = &calls[0].1;
    assert_eq!(fields.get("handler_type").map(String::as_str), Some("scripted"));
    assert_eq!(fields.get("operation").map(String::as_str), Some("GET"));
    assert_eq!(fields.get("correlation_id"), Some(&correlation.to_string()));
    assert_eq!(fields.get("attempts").map(String::as_str), Some("2"));
}
