//! `ChainRows.from_columns`: the one hand-off of a database's `sets` rows from Python
//! (which reads the catalog with its own `sqlite3`) to the chain logic. Every value is
//! checked here, once, and copied into a Rust-owned [`chain::ChainRows`]; a bad one is
//! named by its row, its id and its column.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyString};

use crate::chain::{self, BackupKind, SetState};

const KINDS: &str = "full, incremental, differential, archive_log";
const STATES: &str = "available, corrupt, expired";

/// Every set of one database, held in Rust (see `_core.pyi`).
#[pyclass(frozen, module = "rustybackup._core", name = "ChainRows")]
pub struct ChainRows {
    pub(crate) rows: chain::ChainRows,
}

#[pymethods]
impl ChainRows {
    /// One column per field, each the same length; row `i` is the `i`-th of every column.
    #[staticmethod]
    #[pyo3(signature = (ids, backup_types, parent_ids, started_us, finished_us, statuses))]
    fn from_columns<'py>(
        ids: &Bound<'py, PyAny>,
        backup_types: &Bound<'py, PyAny>,
        parent_ids: &Bound<'py, PyAny>,
        started_us: &Bound<'py, PyAny>,
        finished_us: &Bound<'py, PyAny>,
        statuses: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        let ids = column("ids", ids)?;
        let n = ids.len();
        let same = |name: &'static str, obj: &Bound<'py, PyAny>| -> PyResult<Vec<Bound<'py, PyAny>>> {
            let col = column(name, obj)?;
            if col.len() != n {
                return Err(PyValueError::new_err(format!(
                    "{name} has {} values, ids has {n}: the columns must be the same length",
                    col.len()
                )));
            }
            Ok(col)
        };
        let kinds = same("backup_types", backup_types)?;
        let parents = same("parent_ids", parent_ids)?;
        let starts = same("started_us", started_us)?;
        let ends = same("finished_us", finished_us)?;
        let states = same("statuses", statuses)?;
        let mut rows = chain::ChainRows::with_capacity(n, 0);
        for i in 0..n {
            let id = text(&ids[i], "a str").map_err(|b| row_error(i, None, "id", b))?;
            let bad = |column: &str, b: Bad| row_error(i, Some(id), column, b);
            let kind_name = text(&kinds[i], "a str").map_err(|b| bad("backup_type", b))?;
            let kind = BackupKind::from_name(kind_name).ok_or_else(|| {
                bad(
                    "backup_type",
                    Bad::Value(format!("{kind_name:?} is not one of {KINDS}")),
                )
            })?;
            let parent = if parents[i].is_none() {
                None
            } else {
                Some(text(&parents[i], "a str or None").map_err(|b| bad("parent_id", b))?)
            };
            let started = micros(&starts[i]).map_err(|b| bad("started_us", b))?;
            let finished = micros(&ends[i]).map_err(|b| bad("finished_us", b))?;
            let status = text(&states[i], "a str").map_err(|b| bad("status", b))?;
            let state = SetState::from_name(status)
                .ok_or_else(|| bad("status", Bad::Value(format!("{status:?} is not one of {STATES}"))))?;
            rows.push(id, kind, parent, started, finished, state);
        }
        Ok(Self { rows })
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    fn __repr__(&self) -> String {
        format!("<ChainRows: {} sets>", self.rows.len())
    }
}

/// A column's items (a list, a tuple or any other iterable), each referenced once so the
/// rows can be walked by index. A `str` or `bytes` would iterate as characters: refused.
fn column<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let scalar =
        obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>();
    let not_a_column = || {
        PyTypeError::new_err(format!(
            "{name} must be a sequence of values, one per set, not {}",
            type_name(obj)
        ))
    };
    if scalar {
        return Err(not_a_column());
    }
    obj.try_iter().map_err(|_| not_a_column())?.collect()
}

/// What is wrong with one value: its type (`TypeError`) or its value (`ValueError`).
enum Bad {
    Type(String),
    Value(String),
}

/// The text of a `str` item.
fn text<'a>(item: &'a Bound<'_, PyAny>, expected: &str) -> Result<&'a str, Bad> {
    let s = item
        .cast::<PyString>()
        .map_err(|_| Bad::Type(format!("must be {expected}, not {}", type_name(item))))?;
    s.to_str()
        .map_err(|_| Bad::Value("is not valid text (it holds lone surrogates)".to_string()))
}

/// An `int` of microseconds that fits in 64 bits.
fn micros(item: &Bound<'_, PyAny>) -> Result<i64, Bad> {
    // `bool` is an `int` subclass, but a flag in a time column is a bug, not 0 or 1 µs.
    if item.is_instance_of::<PyBool>() || !item.is_instance_of::<PyInt>() {
        return Err(Bad::Type(format!(
            "must be an int of µs since the epoch, not {}",
            type_name(item)
        )));
    }
    item.extract::<i64>()
        .map_err(|_| Bad::Value(format!("{item} is out of range for 64-bit µs since the epoch")))
}

/// Names the row, its id when known, and the column.
fn row_error(i: usize, id: Option<&str>, column: &str, bad: Bad) -> PyErr {
    let at = match id {
        Some(id) => format!("row {i} (id {id:?})"),
        None => format!("row {i}"),
    };
    match bad {
        Bad::Type(why) => PyTypeError::new_err(format!("{at}: {column} {why}")),
        Bad::Value(why) => PyValueError::new_err(format!("{at}: {column} {why}")),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}
