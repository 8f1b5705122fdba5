//! librdkafka callbacks: logs go to `tracing` (sanitized) and the last client error is kept,
//! so a failed connect can say *why* ("Connection refused", "Failed to resolve").

use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The last error librdkafka reported for a client (shared by its contexts).
#[derive(Debug, Default, Clone)]
pub(crate) struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }

    pub(crate) fn set(&self, text: String) {
        *self.0.lock() = Some(onex_core::sanitize::sanitize(&text));
    }
}

/// Context of the producer and admin clients.
#[derive(Debug, Default, Clone)]
pub(crate) struct KafkaClientContext {
    pub(crate) last_error: LastError,
}

pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let message = onex_core::sanitize::sanitize(message);
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

pub(crate) fn record_error(last: &LastError, error: &KafkaError, reason: &str) {
    tracing::debug!(target: "librdkafka", error = %error, "{}", onex_core::sanitize::sanitize(reason));
    last.set(reason.to_string());
}

impl ClientContext for KafkaClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        record_error(&self.last_error, &error, reason);
    }
}

/// Readers of committed offsets never join a group: no rebalance callbacks needed.
impl rdkafka::consumer::ConsumerContext for KafkaClientContext {}
