//! The cron engine: pure logic, no PyO3 types (see DESIGN.md "CronSchedule").
//!
//! `parse` turns text into a [`Schedule`] (one [`field::Field`] per field, `hashed` for `H`),
//! `search` finds matching wall-clock minutes by jumping field by field, `tz` maps wall
//! times to instants with ISC cron's DST rules, `describe` renders English.

pub mod calendar;
pub mod days;
pub mod describe;
pub mod error;
pub mod field;
pub mod hashed;
pub mod parse;
pub mod schedule;
pub mod search;
pub mod tz;

pub use calendar::Wall;
pub use error::CronError;
pub use field::{Field, FieldKind};
pub use parse::parse;
pub use schedule::Schedule;
pub use tz::{Local, Zone};
