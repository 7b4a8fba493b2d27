//! English descriptions ("At 02:00, Monday through Friday").

use super::schedule::Schedule;

/// Describes a schedule in plain English.
pub fn describe(s: &Schedule) -> String {
    s.normalized().to_string()
}
