//! Which schema reads and which writes, and how a failed rule is phrased from old to new.

/// The direction of one compatibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema reads data written with the old one.
    Backward,
    /// The old schema reads data written with the new one.
    Forward,
}

impl Direction {
    /// `backward` / `forward`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        }
    }

    /// Phrases "the reader accepts less than the writer" as a change from the old schema to the
    /// new one: backward (reader = new) it was `tighter`ed, forward (reader = old) `looser`ed.
    /// `reader` and `writer` describe each side's value of the rule.
    pub(crate) fn change(self, what: &str, words: (&str, &str), reader: &str, writer: &str) -> String {
        match self {
            Direction::Backward => format!("{what} {} from {writer} to {reader}", words.0),
            Direction::Forward => format!("{what} {} from {reader} to {writer}", words.1),
        }
    }

    /// Picks the phrasing for when the new schema is the reader (backward) or the writer (forward).
    pub(crate) fn pick<'a>(self, backward: &'a str, forward: &'a str) -> &'a str {
        match self {
            Direction::Backward => backward,
            Direction::Forward => forward,
        }
    }
}

/// Words for a narrower reader: bounds are tightened/loosened.
pub(crate) const TIGHTENED: (&str, &str) = ("tightened", "loosened");
/// Words for a narrower reader: types are narrowed/widened.
pub(crate) const NARROWED: (&str, &str) = ("narrowed", "widened");
