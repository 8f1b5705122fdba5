//! The compatibility checker for JSON Schema.
//!
//! Compatibility is set inclusion between the instances two schemas accept:
//!
//! - BACKWARD: a reader with the **new** schema reads every instance valid under the **old** one
//!   (new accepts ⊇ old).
//! - FORWARD: a reader with the **old** schema reads everything the **new** one accepts.
//! - FULL: both. `*_TRANSITIVE` checks against every earlier live version, the others against
//!   the latest only. NONE checks nothing.
//!
//! The checker walks both schemas in parallel (`rules.rs`). It proves inclusion for `type`
//! (integer ⊂ number), `properties`, `required`, `additionalProperties`, `enum`/`const`,
//! `items`/`prefixItems`, numeric and length bounds, `multipleOf`, `uniqueItems` and local
//! `$ref`s. Keywords it cannot reason about (`oneOf`, `anyOf`, `allOf`, `not`, `if`/`then`/`else`,
//! `pattern`, `format`, `patternProperties`, …) are accepted only when they are identical on both
//! sides; otherwise the answer is "incompatible" with the reason. Every message starts with the
//! JSON path in the schema, e.g. `#/properties/qty: type narrowed from number to integer`.

mod direction;
mod rules;
mod types;

use serde_json::Value;

use onex_core::{CompatibilityMode, CompatibilityReport, Result, SchemaType};

use crate::canonical::canonicalize;
use crate::validation::{draft_of, CompiledSchema};

pub use direction::Direction;

/// An earlier version of a subject, as the checker needs it.
#[derive(Debug, Clone)]
pub struct PreviousVersion {
    /// Its version number (named in messages).
    pub version: u32,
    /// Its schema text.
    pub schema: String,
}

/// Checks `new_schema` against the `previous` live versions of a subject (oldest first) under
/// `mode`. The new schema must be a valid JSON Schema ([`Error::Decode`](onex_core::Error) /
/// [`Error::Rejected`](onex_core::Error) otherwise); earlier versions were validated when stored.
pub fn check_compatibility(mode: CompatibilityMode, new_schema: &str, previous: &[PreviousVersion]) -> Result<CompatibilityReport> {
    CompiledSchema::compile(new_schema, SchemaType::Json)?;
    let (new, _) = canonicalize(new_schema)?;
    let against: &[PreviousVersion] = match mode {
        CompatibilityMode::None => &[],
        CompatibilityMode::Backward | CompatibilityMode::Forward | CompatibilityMode::Full => match previous.last() {
            Some(_) => &previous[previous.len() - 1..],
            None => &[],
        },
        CompatibilityMode::BackwardTransitive | CompatibilityMode::ForwardTransitive | CompatibilityMode::FullTransitive => previous,
    };
    let (backward, forward) = match mode {
        CompatibilityMode::None => (false, false),
        CompatibilityMode::Backward | CompatibilityMode::BackwardTransitive => (true, false),
        CompatibilityMode::Forward | CompatibilityMode::ForwardTransitive => (false, true),
        CompatibilityMode::Full | CompatibilityMode::FullTransitive => (true, true),
    };
    let mut messages = Vec::new();
    for old in against {
        let (old_value, _) = canonicalize(&old.schema)?;
        for (enabled, direction) in [(backward, Direction::Backward), (forward, Direction::Forward)] {
            if enabled {
                for reason in incompatibilities(&new, &old_value, direction) {
                    messages.push(format!("{reason} ({}, version {})", direction.as_str(), old.version));
                }
            }
        }
    }
    Ok(CompatibilityReport { compatible: messages.is_empty(), messages })
}

/// Why `new` is not compatible with `old` in one direction (empty when it is). Each reason
/// starts with the JSON path in the schema and names the rule that failed.
pub fn incompatibilities(new: &Value, old: &Value, direction: Direction) -> Vec<String> {
    let (reader, writer) = match direction {
        Direction::Backward => (new, old),
        Direction::Forward => (old, new),
    };
    let (Ok(reader_draft), Ok(writer_draft)) = (draft_of(reader), draft_of(writer)) else {
        return vec!["#: cannot decide: unsupported `$schema`".to_string()];
    };
    rules::Checker::new(reader, reader_draft, writer, writer_draft, direction).run()
}
