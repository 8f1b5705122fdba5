//! [`TopicRouter`]: event type → topic.

use std::borrow::Cow;
use std::collections::HashMap;

use onex_core::{validate_topic, Result};

/// Maps an event type to a topic when a publish names none.
///
/// An explicit mapping wins; otherwise the topic is `{prefix}{event_type}{suffix}` (by
/// default both empty: topic = event type).
///
/// ```
/// use onex_bus::publisher::TopicRouter;
/// let router = TopicRouter::new().with_prefix("prod.")?.with_route("orders.created.v1", "orders")?;
/// assert_eq!(router.route("orders.created.v1"), "orders");
/// assert_eq!(router.route("users.signed_up.v1"), "prod.users.signed_up.v1");
/// assert!(TopicRouter::new().with_route("a.v1", "bad topic").is_err());
/// # Ok::<(), onex_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRouter {
    prefix: String,
    suffix: String,
    routes: HashMap<String, String>,
}

impl TopicRouter {
    /// Topic = event type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepends `prefix` to routed event types (checked as part of a topic name).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if !prefix.is_empty() {
            validate_topic(&prefix).map_err(|e| e.with("router", "prefix"))?;
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// Appends `suffix` to routed event types (checked as part of a topic name).
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Result<Self> {
        let suffix = suffix.into();
        if !suffix.is_empty() {
            validate_topic(&suffix).map_err(|e| e.with("router", "suffix"))?;
        }
        self.suffix = suffix;
        Ok(self)
    }

    /// Routes `event_type` to `topic` exactly (the topic name is validated).
    pub fn with_route(mut self, event_type: impl Into<String>, topic: impl Into<String>) -> Result<Self> {
        let (event_type, topic) = (event_type.into(), topic.into());
        validate_topic(&topic).map_err(|e| e.with("event_type", &event_type))?;
        self.routes.insert(event_type, topic);
        Ok(self)
    }

    /// The topic of `event_type`. Borrows when no name has to be built.
    pub fn route<'a>(&'a self, event_type: &'a str) -> Cow<'a, str> {
        if let Some(topic) = self.routes.get(event_type) {
            return Cow::Borrowed(topic);
        }
        if self.prefix.is_empty() && self.suffix.is_empty() {
            return Cow::Borrowed(event_type);
        }
        let mut topic = String::with_capacity(self.prefix.len() + event_type.len() + self.suffix.len());
        topic.push_str(&self.prefix);
        topic.push_str(event_type);
        topic.push_str(&self.suffix);
        Cow::Owned(topic)
    }
}
