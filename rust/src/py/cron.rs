//! Bindings for `crate::cron`: `CronSchedule`, `CronField` and the iterator.
//!
//! Datetimes are converted by hand from the C-level fields (no `utcoffset()` call when the
//! argument is naive or already in the schedule's zone), because the conversion, not the
//! search, dominates a warm `next_after`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use pyo3::basic::CompareOp;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyString, PyTimeAccess, PyTuple, PyTzInfo, PyTzInfoAccess,
};

use super::errors::cron_error;
use crate::cron::calendar::{days_from_civil, Wall};
use crate::cron::{self, CronError as RustCronError, Schedule, Zone};

/// The most times one `next_n` call returns.
const MAX_NEXT_N: usize = 1_000_000;

/// A cron schedule in a time zone (Vixie/ISC cron semantics, DST rules included).
#[pyclass(frozen, module = "rustybackup", name = "CronSchedule")]
pub struct PyCronSchedule {
    sched: Schedule,
    zone: Zone,
    tzinfo: Py<PyTzInfo>,
    /// What `__reduce__` passes back as `tz`: the zone name, or the fixed-offset timezone.
    tz_arg: Py<PyAny>,
    expr: String,
    seed: Option<String>,
}

/// One of the five fields of a `CronSchedule`.
#[pyclass(frozen, module = "rustybackup", name = "CronField")]
pub struct PyCronField {
    name: &'static str,
    values: Vec<u32>,
    text: String,
    unrestricted: bool,
}

/// Iterator returned by `CronSchedule.iter_after`.
#[pyclass(module = "rustybackup", name = "CronIterator")]
pub struct PyCronIterator {
    schedule: Py<PyCronSchedule>,
    cursor: Mutex<Option<i64>>,
}

fn zone_from_arg<'py>(
    py: Python<'py>,
    tz: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Zone, Bound<'py, PyTzInfo>, Py<PyAny>)> {
    let Some(tz) = tz else {
        // The default zone: ZoneInfo("UTC") is looked up once per interpreter, not per parse
        // (parsing thousands of expressions is a benchmarked path).
        static UTC_ZONE: PyOnceLock<Py<PyTzInfo>> = PyOnceLock::new();
        let info = UTC_ZONE.get_or_try_init(py, || PyTzInfo::timezone(py, "UTC").map(Bound::unbind))?;
        let name = pyo3::intern!(py, "UTC");
        return Ok((
            Zone::Named(chrono_tz::Tz::UTC),
            info.bind(py).clone(),
            name.clone().into_any().unbind(),
        ));
    };
    if let Ok(name) = tz.cast::<PyString>() {
        let key = name.to_str()?;
        let zone = Zone::named(key).map_err(cron_error)?;
        let info =
            PyTzInfo::timezone(py, key).map_err(|e| cron_error(RustCronError::UnknownZone(format!("{key} ({e})"))))?;
        return Ok((zone, info, tz.clone().unbind()));
    }
    let Ok(info) = tz.cast::<PyTzInfo>() else {
        return Err(PyTypeError::new_err(format!(
            "tz must be a zone name or a tzinfo, not {}",
            tz.get_type().name()?
        )));
    };
    // zoneinfo.ZoneInfo (and pytz/dateutil zones that expose a key) map to the IANA zone.
    for attr in ["key", "zone"] {
        if let Ok(key) = info.getattr(attr) {
            if let Ok(key) = key.extract::<String>() {
                let zone = Zone::named(&key).map_err(cron_error)?;
                let own = PyTzInfo::timezone(py, key.as_str())?;
                return Ok((zone, own, PyString::new(py, &key).into_any().unbind()));
            }
        }
    }
    // A fixed offset: datetime.timezone(timedelta(...)).
    let offset = info.call_method1("utcoffset", (py.None(),))?;
    if let Ok(delta) = offset.cast::<PyDelta>() {
        let secs = i64::from(delta.get_days()) * 86_400 + i64::from(delta.get_seconds());
        if delta.get_microseconds() == 0 && secs.abs() < 86_400 {
            return Ok((Zone::Fixed(secs as i32), info.clone(), info.clone().into_any().unbind()));
        }
    }
    Err(cron_error(RustCronError::UnknownZone(format!(
        "{} (expected an IANA zone name, a zoneinfo.ZoneInfo or a fixed-offset datetime.timezone)",
        info.repr()?
    ))))
}

impl PyCronSchedule {
    /// The instant (whole seconds, sub-second micros) a datetime stands for; naive means wall
    /// time in the schedule's zone (fold picks the occurrence, as zoneinfo does).
    fn instant_of(&self, py: Python<'_>, dt: &Bound<'_, PyDateTime>) -> PyResult<(i64, u32)> {
        let wall = days_from_civil(dt.get_year(), u32::from(dt.get_month()), u32::from(dt.get_day())) * 86_400
            + i64::from(dt.get_hour()) * 3600
            + i64::from(dt.get_minute()) * 60
            + i64::from(dt.get_second());
        let micros = dt.get_microsecond();
        let tzinfo = dt.get_tzinfo();
        let secs = match tzinfo {
            None => self.zone.instant_of_wall(wall, dt.get_fold()),
            Some(ref tz) if tz.is(self.tzinfo.bind(py)) => self.zone.instant_of_wall(wall, dt.get_fold()),
            Some(ref tz) if tz.is(&*PyTzInfo::utc(py)?) => wall,
            Some(_) => {
                let off = dt.call_method0(pyo3::intern!(py, "utcoffset"))?;
                if off.is_none() {
                    self.zone.instant_of_wall(wall, dt.get_fold())
                } else {
                    let delta = off.cast::<PyDelta>()?;
                    // utcoffset may carry microseconds; fold them into (secs, micros).
                    let off_us = (i64::from(delta.get_days()) * 86_400 + i64::from(delta.get_seconds())) * 1_000_000
                        + i64::from(delta.get_microseconds());
                    let total = wall * 1_000_000 + i64::from(micros) - off_us;
                    return Ok((total.div_euclid(1_000_000), total.rem_euclid(1_000_000) as u32));
                }
            }
        };
        Ok((secs, micros))
    }

    /// An aware datetime in the schedule's zone for an instant.
    fn to_datetime<'py>(&self, py: Python<'py>, instant: i64) -> PyResult<Bound<'py, PyDateTime>> {
        let (wall, fold) = self.zone.wall_of(instant);
        let w = Wall::from_seconds(wall);
        if !(1..=9999).contains(&w.year) {
            return Err(cron_error(RustCronError::OutOfRange(format!(
                "the next time of {:?} falls outside years 1-9999",
                self.sched.normalized()
            ))));
        }
        PyDateTime::new_with_fold(
            py,
            w.year,
            w.month as u8,
            w.day as u8,
            w.hour as u8,
            w.minute as u8,
            wall.rem_euclid(60) as u8,
            0,
            Some(self.tzinfo.bind(py)),
            fold,
        )
    }

    fn next_instant(&self, t: i64) -> Result<i64, RustCronError> {
        self.sched.next_after(&self.zone, t)
    }
}

#[pymethods]
impl PyCronSchedule {
    #[new]
    #[pyo3(signature = (expr, tz = None, seed = None))]
    fn py_new(py: Python<'_>, expr: &str, tz: Option<&Bound<'_, PyAny>>, seed: Option<String>) -> PyResult<Self> {
        let sched = cron::parse(expr, seed.as_deref().unwrap_or("")).map_err(cron_error)?;
        let (zone, tzinfo, tz_arg) = zone_from_arg(py, tz)?;
        Ok(PyCronSchedule {
            sched,
            zone,
            tzinfo: tzinfo.unbind(),
            tz_arg,
            expr: expr.to_string(),
            seed,
        })
    }

    /// The schedule's zone as a tzinfo (zoneinfo.ZoneInfo or datetime.timezone).
    #[getter]
    fn tz(&self, py: Python<'_>) -> Py<PyTzInfo> {
        self.tzinfo.clone_ref(py)
    }

    /// The seed that spread `H` values, if any.
    #[getter]
    fn seed(&self) -> Option<String> {
        self.seed.clone()
    }

    /// The five fields: minute, hour, day-of-month, month, day-of-week.
    #[getter]
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let items: Vec<PyCronField> = self
            .sched
            .fields()
            .iter()
            .map(|f| PyCronField {
                name: f.kind.name(),
                values: f.values(),
                text: f.normalized(),
                unrestricted: f.star,
            })
            .collect();
        let objs = items
            .into_iter()
            .map(|f| Bound::new(py, f))
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, objs)
    }

    /// True when neither minute nor hour starts with `*` (DST gaps and folds fire once).
    #[getter]
    fn is_fixed_time(&self) -> bool {
        self.sched.is_fixed_time()
    }

    /// Whether the schedule fires in the minute that contains `dt`.
    fn matches(&self, py: Python<'_>, dt: &Bound<'_, PyDateTime>) -> PyResult<bool> {
        let (secs, _) = self.instant_of(py, dt)?;
        let (wall, _) = self.zone.wall_of(secs);
        let minute_start = secs - wall.rem_euclid(60);
        self.sched.fires_at(&self.zone, minute_start).map_err(cron_error)
    }

    /// The first firing time strictly after `dt`.
    fn next_after<'py>(&self, py: Python<'py>, dt: &Bound<'py, PyDateTime>) -> PyResult<Bound<'py, PyDateTime>> {
        let (secs, _) = self.instant_of(py, dt)?;
        let i = self.next_instant(secs).map_err(cron_error)?;
        self.to_datetime(py, i)
    }

    /// The last firing time strictly before `dt`.
    fn prev_before<'py>(&self, py: Python<'py>, dt: &Bound<'py, PyDateTime>) -> PyResult<Bound<'py, PyDateTime>> {
        let (secs, micros) = self.instant_of(py, dt)?;
        let t = secs + i64::from(micros > 0);
        let i = self.sched.prev_before(&self.zone, t).map_err(cron_error)?;
        self.to_datetime(py, i)
    }

    /// The next `n` firing times after `dt` (fewer only at the end of year 9999).
    fn next_n<'py>(
        &self,
        py: Python<'py>,
        dt: &Bound<'py, PyDateTime>,
        n: i64,
    ) -> PyResult<Vec<Bound<'py, PyDateTime>>> {
        // A bound keeps one call from running for minutes and filling memory; iter_after
        // streams any number.
        let n = match usize::try_from(n) {
            Ok(n) if n <= MAX_NEXT_N => n,
            _ => {
                return Err(cron_error(RustCronError::OutOfRange(format!(
                    "n: {n} is out of range 0-{MAX_NEXT_N} (use iter_after for more)"
                ))))
            }
        };
        let (secs, _) = self.instant_of(py, dt)?;
        let instants = if n > 64 {
            py.detach(|| self.sched.next_n(&self.zone, secs, n))
        } else {
            self.sched.next_n(&self.zone, secs, n)
        }
        .map_err(cron_error)?;
        instants.into_iter().map(|i| self.to_datetime(py, i)).collect()
    }

    /// An endless iterator of firing times after `dt` (it stops at year 9999).
    fn iter_after(slf: &Bound<'_, Self>, dt: &Bound<'_, PyDateTime>) -> PyResult<PyCronIterator> {
        let (secs, _) = slf.get().instant_of(slf.py(), dt)?;
        Ok(PyCronIterator {
            schedule: slf.clone().unbind(),
            cursor: Mutex::new(Some(secs)),
        })
    }

    /// Plain English, e.g. "At 02:00, Monday through Friday".
    fn describe(&self) -> String {
        cron::describe::describe(&self.sched)
    }

    fn __str__(&self) -> String {
        self.sched.normalized().to_string()
    }

    fn __repr__(&self) -> String {
        format!("CronSchedule({:?}, tz={:?})", self.sched.normalized(), self.zone.key())
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<PyCronSchedule>() else {
            return Ok(py.NotImplemented());
        };
        let o = other.get();
        let eq = self.sched.normalized() == o.sched.normalized() && self.zone == o.zone;
        match op {
            CompareOp::Eq => Ok(eq.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!eq).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.sched.normalized().hash(&mut h);
        self.zone.hash(&mut h);
        h.finish()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let me = slf.get();
        let args = (me.expr.clone(), me.tz_arg.clone_ref(py), me.seed.clone());
        PyTuple::new(py, [slf.get_type().into_any(), args.into_pyobject(py)?.into_any()])
    }
}

#[pymethods]
impl PyCronField {
    /// "minute", "hour", "day-of-month", "month" or "day-of-week".
    #[getter]
    fn name(&self) -> &'static str {
        self.name
    }

    /// The sorted matching values (day-of-week 0-6, Sunday 0), without L/W/# extensions.
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.values)
    }

    /// The field's normalized text.
    #[getter]
    fn text(&self) -> &str {
        &self.text
    }

    /// True when the field starts with `*` (Vixie cron's unrestricted day field).
    #[getter]
    fn unrestricted(&self) -> bool {
        self.unrestricted
    }

    fn __repr__(&self) -> String {
        format!("CronField(name={:?}, text={:?})", self.name, self.text)
    }
}

#[pymethods]
impl PyCronIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        let sched = self.schedule.get();
        let mut cursor = match self.cursor.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(cur) = *cursor else { return Ok(None) };
        match sched.next_instant(cur) {
            Ok(i) => match sched.to_datetime(py, i) {
                Ok(dt) => {
                    *cursor = Some(i);
                    Ok(Some(dt))
                }
                Err(_) => {
                    *cursor = None;
                    Ok(None)
                }
            },
            Err(RustCronError::OutOfRange(_)) => {
                *cursor = None;
                Ok(None)
            }
            Err(e) => Err(cron_error(e)),
        }
    }
}

/// Adds this domain's classes to `rustybackup._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCronSchedule>()?;
    m.add_class::<PyCronField>()?;
    m.add_class::<PyCronIterator>()?;
    Ok(())
}
