//! Bindings for `crate::chain`: rows come in as 6-tuples
//! `(id, kind, parent_id, started_us, finished_us, status)`, whose strings are borrowed,
//! not copied, or as a `ChainRows` built once from the catalog's columns
//! (`ChainRows.from_columns`); the resolution runs with the GIL released.

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashSet;

use pyo3::basic::CompareOp;
use pyo3::types::{PyList, PyString, PyTuple};

use super::chain_rows::ChainRows;
use super::errors::chain_error;
use crate::chain::recoverable;
use crate::chain::recovery;
use crate::chain::retention::{self, KeepCounts, Policy};
use crate::chain::{BackupKind, SetRef, SetState};

const ROW_SHAPE: &str = "(id, kind, parent_id, started_us, finished_us, status)";

/// Adds this domain's classes and functions to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(recovery_path, m)?)?;
    m.add_function(wrap_pyfunction!(recovery_chain, m)?)?;
    m.add_function(wrap_pyfunction!(recoverable_intervals, m)?)?;
    m.add_function(wrap_pyfunction!(recoverable_since, m)?)?;
    m.add_function(wrap_pyfunction!(retention_plan, m)?)?;
    m.add_class::<RetentionDecision>()?;
    m.add_class::<ChainRows>()?;
    Ok(())
}

/// The sets a restore to `until_us` reads, base first (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (sets, /, until_us = None, *, database = None))]
fn recovery_path<'py>(
    py: Python<'py>,
    sets: &Bound<'py, PyAny>,
    until_us: Option<i64>,
    database: Option<&str>,
) -> PyResult<Bound<'py, PyList>> {
    let sets = Rows::of(sets)?;
    let rows = sets.refs()?;
    let path = py
        .detach(|| recovery::recovery_path(&rows, until_us, database))
        .map_err(chain_error)?;
    let ids = path
        .iter()
        .map(|&p| sets.id(py, p as usize))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, ids)
}

/// `set_id` and its ancestors, base first, whatever their status (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (sets, set_id, /))]
fn recovery_chain<'py>(py: Python<'py>, sets: &Bound<'py, PyAny>, set_id: &str) -> PyResult<Bound<'py, PyList>> {
    let sets = Rows::of(sets)?;
    let rows = sets.refs()?;
    let chain = py
        .detach(|| recovery::recovery_chain(&rows, set_id))
        .map_err(chain_error)?;
    let ids = chain
        .iter()
        .map(|&p| sets.id(py, p as usize))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, ids)
}

/// Every instant a restore can reach, as inclusive `(from_us, to_us)` ranges (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (sets, /))]
fn recoverable_intervals(py: Python<'_>, sets: &Bound<'_, PyAny>) -> PyResult<Vec<(i64, i64)>> {
    let sets = Rows::of(sets)?;
    let rows = sets.refs()?;
    let intervals = py
        .detach(|| recoverable::recoverable_intervals(&rows))
        .map_err(chain_error)?;
    Ok(intervals.into_iter().map(|r| r.into_inner()).collect())
}

/// The earliest instant from which every instant up to `now_us` is recoverable (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (sets, /, now_us))]
fn recoverable_since(py: Python<'_>, sets: &Bound<'_, PyAny>, now_us: i64) -> PyResult<Option<i64>> {
    let sets = Rows::of(sets)?;
    let rows = sets.refs()?;
    let intervals = py
        .detach(|| recoverable::recoverable_intervals(&rows))
        .map_err(chain_error)?;
    Ok(recoverable::recoverable_since(&intervals, now_us))
}

/// Per set, in input order, `(keep, reason)` under a combined policy (see `_core.pyi`).
#[pyfunction]
#[pyo3(signature = (
    sets, /, now_us, *, redundancy = None, window_us = None, keep_last = 0, keep_hourly = 0, keep_daily = 0,
    keep_weekly = 0, keep_monthly = 0, keep_yearly = 0, tz = "UTC", protected = None, force = false
))]
#[allow(clippy::too_many_arguments)]
fn retention_plan<'py>(
    py: Python<'py>,
    sets: &Bound<'py, PyAny>,
    now_us: i64,
    redundancy: Option<i64>,
    window_us: Option<i64>,
    keep_last: i64,
    keep_hourly: i64,
    keep_daily: i64,
    keep_weekly: i64,
    keep_monthly: i64,
    keep_yearly: i64,
    tz: &str,
    protected: Option<&Bound<'py, PyAny>>,
    force: bool,
) -> PyResult<Bound<'py, PyList>> {
    let count = |name: &str, value: i64, least: i64| -> PyResult<u32> {
        if value < least || value > i64::from(u32::MAX) {
            return Err(PyValueError::new_err(format!(
                "{name} must be between {least} and {}, not {value}",
                u32::MAX
            )));
        }
        Ok(value as u32)
    };
    let keep = KeepCounts {
        last: count("keep_last", keep_last, 0)?,
        hourly: count("keep_hourly", keep_hourly, 0)?,
        daily: count("keep_daily", keep_daily, 0)?,
        weekly: count("keep_weekly", keep_weekly, 0)?,
        monthly: count("keep_monthly", keep_monthly, 0)?,
        yearly: count("keep_yearly", keep_yearly, 0)?,
    };
    let redundancy = redundancy.map(|n| count("redundancy", n, 1)).transpose()?;
    if let Some(w) = window_us.filter(|&w| w <= 0) {
        return Err(PyValueError::new_err(format!("window_us must be positive, not {w}")));
    }
    if redundancy.is_none() && window_us.is_none() && keep == KeepCounts::default() {
        return Err(PyValueError::new_err(
            "the retention policy keeps nothing: give redundancy, window_us or a positive keep_* count",
        ));
    }
    let protected: Vec<String> = match protected {
        None => Vec::new(),
        Some(ids) if ids.is_instance_of::<PyString>() => {
            return Err(PyTypeError::new_err(
                "protected must be an iterable of set ids, not a single str",
            ));
        }
        Some(ids) => ids
            .try_iter()?
            .map(|id| {
                id?.extract::<String>()
                    .map_err(|_| PyTypeError::new_err("protected must be an iterable of set ids (str)"))
            })
            .collect::<PyResult<_>>()?,
    };
    let tz = tz
        .parse()
        .map_err(|_| PyValueError::new_err(format!("unknown time zone {tz:?}")))?;
    let policy = Policy {
        redundancy,
        window_us,
        keep,
        tz,
    };
    let sets = Rows::of(sets)?;
    let rows = sets.refs()?;
    let plan = py.detach(|| {
        let protected: HashSet<&str> = protected.iter().map(String::as_str).collect();
        retention::retention_plan(&rows, &policy, now_us, &protected, force)
    });
    let plan = plan.map_err(chain_error)?;
    // Each distinct reason becomes one Python str, shared by every row that has it.
    let mut texts: Vec<Option<Py<PyString>>> = (0..plan.texts.len()).map(|_| None).collect();
    let mut items = Vec::with_capacity(plan.rows.len());
    for (i, &(keep, t)) in plan.rows.iter().enumerate() {
        let reason = texts[t as usize]
            .get_or_insert_with(|| PyString::new(py, &plan.texts[t as usize]).unbind())
            .clone_ref(py);
        let set_id = sets.id(py, i)?.unbind();
        items.push(Bound::new(py, RetentionDecision { set_id, keep, reason })?);
    }
    PyList::new(py, items)
}

/// One set's retention decision. A native class rather than a dataclass: a plan holds one
/// per set, and building 50,000 frozen dataclasses costs more than the whole resolution.
#[pyclass(frozen, module = "rustybackup._core", name = "RetentionDecision")]
pub struct RetentionDecision {
    /// The set this decision is about.
    #[pyo3(get)]
    set_id: Py<PyString>,
    /// True when the set stays.
    #[pyo3(get)]
    keep: bool,
    /// Why, in words a human can check against the catalog.
    #[pyo3(get)]
    reason: Py<PyString>,
}

#[pymethods]
impl RetentionDecision {
    #[new]
    fn new(set_id: Bound<'_, PyString>, keep: bool, reason: Bound<'_, PyString>) -> Self {
        Self {
            set_id: set_id.unbind(),
            keep,
            reason: reason.unbind(),
        }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("set_id", "keep", "reason")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RetentionDecision(set_id={}, keep={}, reason={})",
            self.set_id.bind(py).repr()?,
            if self.keep { "True" } else { "False" },
            self.reason.bind(py).repr()?
        ))
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<RetentionDecision>() else {
            return Ok(py.NotImplemented());
        };
        let o = other.get();
        let eq = self.keep == o.keep
            && self.set_id.bind(py).as_any().eq(o.set_id.bind(py))?
            && self.reason.bind(py).as_any().eq(o.reason.bind(py))?;
        match op {
            CompareOp::Eq => Ok(eq.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!eq).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.__getnewargs__(py)?.hash()
    }

    /// Pickling and `copy` rebuild the decision from its three fields.
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (self.set_id.clone_ref(py), self.keep, self.reason.clone_ref(py)).into_pyobject(py)
    }
}

/// The rows a chain function was given: Python tuples (kept alive so their strings can be
/// borrowed) or a `ChainRows` built by `ChainRows.from_columns`.
enum Rows<'py> {
    Tuples(Vec<Bound<'py, PyTuple>>),
    Columns(Bound<'py, ChainRows>),
}

impl<'py> Rows<'py> {
    fn of(sets: &Bound<'py, PyAny>) -> PyResult<Self> {
        match sets.cast::<ChainRows>() {
            Ok(rows) => Ok(Self::Columns(rows.clone())),
            Err(_) => Ok(Self::Tuples(collect_tuples(sets)?)),
        }
    }

    fn refs(&self) -> PyResult<Vec<SetRef<'_>>> {
        match self {
            Self::Tuples(tuples) => borrow_rows(tuples),
            Self::Columns(rows) => Ok(rows.get().rows.refs()),
        }
    }

    /// Row `i`'s id as a Python str: the caller's own object for tuples.
    fn id(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyString>> {
        match self {
            Self::Tuples(tuples) => Ok(tuples[i].get_item(0)?.cast_into::<PyString>()?),
            Self::Columns(rows) => rows
                .get()
                .rows
                .id(i)
                .map(|id| PyString::new(py, id))
                .ok_or_else(|| PyIndexError::new_err(format!("no row {i}"))),
        }
    }
}

/// Holds a strong reference to every row tuple, so the strings borrowed from them stay
/// valid while the GIL is released (tuples are immutable, and so are their str items).
pub(crate) fn collect_tuples<'py>(sets: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let to_tuple = |i: usize, item: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyTuple>> {
        match item.cast_into::<PyTuple>() {
            Ok(t) if t.len() == 6 => Ok(t),
            Ok(t) => Err(PyValueError::new_err(format!(
                "sets[{i}] has {} items; expected 6: {ROW_SHAPE}",
                t.len()
            ))),
            Err(e) => Err(PyTypeError::new_err(format!(
                "sets[{i}] must be a tuple {ROW_SHAPE}, not {}",
                type_name(e.into_inner().as_any())
            ))),
        }
    };
    if let Ok(list) = sets.cast::<PyList>() {
        list.iter().enumerate().map(|(i, item)| to_tuple(i, item)).collect()
    } else if let Ok(tuple) = sets.cast::<PyTuple>() {
        tuple.iter().enumerate().map(|(i, item)| to_tuple(i, item)).collect()
    } else if sets.is_instance_of::<PyString>() {
        Err(PyTypeError::new_err(format!(
            "sets must be a sequence of {ROW_SHAPE} tuples, not str"
        )))
    } else {
        let iter = sets.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "sets must be a sequence of {ROW_SHAPE} tuples, not {}",
                type_name(sets)
            ))
        })?;
        iter.enumerate().map(|(i, item)| to_tuple(i, item?)).collect()
    }
}

/// Views each tuple as a [`SetRef`], naming the position and field of anything malformed.
pub(crate) fn borrow_rows<'a>(tuples: &'a [Bound<'_, PyTuple>]) -> PyResult<Vec<SetRef<'a>>> {
    tuples.iter().enumerate().map(|(i, t)| borrow_row(i, t)).collect()
}

fn borrow_row<'a>(i: usize, t: &'a Bound<'_, PyTuple>) -> PyResult<SetRef<'a>> {
    // Every tuple here has exactly 6 items (checked in `collect_tuples`) and tuples never
    // change size, so the bounds-checked PyTuple_GetItem call per field is not needed.
    let item = |k: usize| {
        debug_assert!(k < 6 && t.len() == 6);
        // SAFETY: `k < 6 == t.len()`: `collect_tuples` only returns 6-item tuples, every
        // caller below passes a constant below 6, and a tuple's length is immutable.
        unsafe { t.get_borrowed_item_unchecked(k) }
    };
    let text = |k: usize, field: &str| -> PyResult<&'a str> {
        let item = item(k);
        item.extract::<&'a str>()
            .map_err(|_| PyTypeError::new_err(format!("sets[{i}]: {field} must be a str, not {}", type_name(&item))))
    };
    let int = |k: usize, field: &str| -> PyResult<i64> {
        let item = item(k);
        item.extract::<i64>().map_err(|_| {
            PyTypeError::new_err(format!(
                "sets[{i}]: {field} must be an int of µs since the epoch, not {}",
                type_name(&item)
            ))
        })
    };
    let id = text(0, "id")?;
    let kind_name = text(1, "kind")?;
    let kind = BackupKind::from_name(kind_name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "sets[{i}]: kind {kind_name:?} is not one of full, incremental, differential, archive_log"
        ))
    })?;
    let parent_item = item(2);
    let parent = if parent_item.is_none() {
        None
    } else {
        Some(text(2, "parent_id (or None)")?)
    };
    let started_us = int(3, "started_us")?;
    let finished_us = int(4, "finished_us")?;
    let status = text(5, "status")?;
    let state = SetState::from_name(status).ok_or_else(|| {
        PyValueError::new_err(format!(
            "sets[{i}]: status {status:?} is not one of available, corrupt, expired"
        ))
    })?;
    Ok(SetRef::new(id, kind, parent, started_us, finished_us, state))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}
