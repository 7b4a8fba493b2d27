//! The cron engine's error type. Every message names the field (or the zone) and the
//! offending text, as cronsim's "Bad day-of-month" does, but with the reason spelled out.

use std::fmt;

/// Why an expression, a zone or a search was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronError {
    /// The expression does not have five fields (after macro expansion).
    FieldCount(usize),
    /// The expression is empty or only whitespace.
    Empty,
    /// A `@macro` that cron does not define (or that we cannot schedule, like `@reboot`).
    UnknownMacro(String),
    /// A problem inside one field: `field` is its name ("day-of-week"), `message` the reason
    /// naming the offending text.
    Field { field: &'static str, message: String },
    /// The expression is valid but no date can ever match it.
    NeverFires(String),
    /// The zone name is not in the IANA database.
    UnknownZone(String),
    /// The search ran past what a datetime can hold (years 1-9999).
    OutOfRange(String),
}

impl CronError {
    /// Shorthand for a field error.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        CronError::Field {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CronError::FieldCount(n) => write!(f, "expected 5 fields, got {n}"),
            CronError::Empty => write!(f, "expected 5 fields, got an empty expression"),
            CronError::UnknownMacro(m) => write!(
                f,
                "unknown macro {m:?}: expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
            ),
            CronError::Field { field, message } => write!(f, "{field}: {message}"),
            CronError::NeverFires(reason) => write!(f, "the expression can never fire: {reason}"),
            CronError::UnknownZone(z) => write!(f, "unknown time zone {z:?}"),
            CronError::OutOfRange(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CronError {}
