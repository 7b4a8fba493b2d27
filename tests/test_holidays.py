"""Holiday calendars: the ``holidays`` package and ``icalendar`` as oracles, strict ICS errors,
zones and DST, windows and jobs that skip holidays, the config file and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_pkg
import icalendar
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupScheduler, BackupWindow, ScheduledBackup
from rustybackup.cli import cli
from rustybackup.config import load_config
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.errors import ConfigError
from rustybackup.holidays_cal import HolidayCalendar, parse_ics
from sched_fakes import FakeClock, FakeManager

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Pacific/Chatham",
]


# --- the holidays package as the oracle -------------------------------------------------


def test_de_by_2026_is_exactly_the_packages_calendar() -> None:
    cal = HolidayCalendar("de-by")
    assert cal.region == "DE-BY"
    oracle = holidays_pkg.country_holidays("DE", subdiv="BY", years=2026)
    day = date(2026, 1, 1)
    found = []
    while day.year == 2026:
        name = cal.name_on(day)
        assert (name is not None) == (day in oracle), day
        if name is not None:
            assert name == f"{oracle[day]} (DE-BY)"
            found.append(day)
        day += timedelta(days=1)
    # Bavaria has Epiphany and Corpus Christi, which Berlin does not.
    assert date(2026, 1, 6) in found and date(2026, 6, 4) in found
    assert HolidayCalendar("DE").name_on(date(2026, 6, 4)) is None


@settings(deadline=None, max_examples=200)
@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2040, 12, 31),
        timezones=st.just(UTC),
    ),
    zone=st.sampled_from(ZONES),
)
def test_a_date_is_the_local_date_in_the_asking_zone(at: datetime, zone: str) -> None:
    cal = HolidayCalendar("DE-BY")
    tz = ZoneInfo(zone)
    local = at.astimezone(tz).date()
    oracle = holidays_pkg.country_holidays("DE", subdiv="BY", years=local.year)
    assert (cal.name_at(at, tz) is not None) == (local in oracle)


def test_christmas_starts_in_berlin_before_it_starts_in_utc() -> None:
    cal = HolidayCalendar("DE")
    eve = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)
    assert cal.name_at(eve, UTC) is None
    assert cal.name_at(eve, BERLIN) == "Christmas Day (DE)"


@pytest.mark.parametrize("spec", ["XX", "DE-ZZ", "", "D", "DE BY", "DE-BY-1"])
def test_an_unknown_region_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="holidays"):
        HolidayCalendar(spec)


# --- ICS ---------------------------------------------------------------------------------


def ics(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


def vevent(*lines: str) -> str:
    return "BEGIN:VEVENT\r\n" + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n"


def write(tmp_path: Path, text: str, name: str = "cal.ics") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_multi_day_all_day_events_end_is_exclusive(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ics(
            vevent(
                "UID:1",
                "DTSTART;VALUE=DATE:20261224",
                "DTEND;VALUE=DATE:20270102",
                "SUMMARY:Shutdown",
            ),
            vevent("UID:2", "DTSTART;VALUE=DATE:20260815", "SUMMARY:Assumption"),
            vevent(
                "UID:3",
                "DTSTART;VALUE=DATE:20260301",
                "DURATION:P2D",
                "SUMMARY:Two days",
            ),
        ),
    )
    got = parse_ics(path)
    shutdown = [d for d, n in got if n == "Shutdown"]
    assert shutdown[0] == date(2026, 12, 24) and shutdown[-1] == date(2027, 1, 1) and len(shutdown) == 9
    assert [d for d, n in got if n == "Assumption"] == [date(2026, 8, 15)]
    assert [d for d, n in got if n == "Two days"] == [
        date(2026, 3, 1),
        date(2026, 3, 2),
    ]


def test_timed_events_cover_the_dates_they_touch_in_their_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ics(
            vevent(
                "DTSTART;TZID=Europe/Berlin:20261231T220000",
                "DTEND;TZID=Europe/Berlin:20270101T020000",
                "SUMMARY:Party",
            ),
            vevent(
                "DTSTART:20260501T000000Z",
                "DTEND:20260502T000000Z",
                "SUMMARY:Ends at midnight",
            ),
            vevent(
                "DTSTART:20260601T090000",
                "DTEND:20260601T100000",
                "SUMMARY:Floating, with a \\, comma",
            ),
        ),
    )
    got = parse_ics(path)
    assert [d for d, n in got if n == "Party"] == [date(2026, 12, 31), date(2027, 1, 1)]
    assert [d for d, n in got if n == "Ends at midnight"] == [date(2026, 5, 1)]
    assert [d for d, n in got if n.startswith("Floating")] == [date(2026, 6, 1)]
    assert "Floating, with a , comma" in {n for _, n in got}


def test_folded_lines_and_quoted_colons_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ics(
            vevent(
                'DTSTART;VALUE=DATE;X-NOTE="a:b":20260704',
                "SUMMARY:Independence",
                " Day",
            )
        ),
    )
    assert parse_ics(path) == [(date(2026, 7, 4), "IndependenceDay")]


@st.composite
def all_day_events(draw: st.DrawFn) -> list[tuple[date, int, str]]:
    n = draw(st.integers(0, 8))
    return [
        (
            draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 1, 1))),
            draw(st.integers(1, 40)),
            draw(
                st.text(
                    st.characters(
                        min_codepoint=32,
                        max_codepoint=0x2FF,
                        blacklist_characters="\\;,",
                    ),
                    min_size=1,
                    max_size=30,
                ).filter(lambda s: s.strip() == s and s)
            ),
        )
        for _ in range(n)
    ]


@settings(deadline=None, max_examples=100)
@given(events=all_day_events(), timed=st.booleans())
def test_files_written_by_icalendar_read_as_icalendar_reads_them(
    tmp_path_factory: pytest.TempPathFactory,
    events: list[tuple[date, int, str]],
    timed: bool,
) -> None:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//test//EN")
    cal.add("version", "2.0")
    for i, (start, days, name) in enumerate(events):
        ev = icalendar.Event()
        ev.add("uid", str(i))
        ev.add("summary", name)
        if timed:
            begin = datetime.combine(start, time(21, 15), tzinfo=ZoneInfo("America/New_York"))
            ev.add("dtstart", begin)
            ev.add("dtend", begin + timedelta(hours=days))
        else:
            ev.add("dtstart", start)
            ev.add("dtend", start + timedelta(days=days))
        cal.add_component(ev)
    path = tmp_path_factory.mktemp("ics") / "gen.ics"
    path.write_bytes(cal.to_ical())
    # The oracle: icalendar's own reading of the file, expanded to dates by the rule above.
    expected: list[tuple[date, str]] = []
    for comp in icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT"):
        s, e, name = (
            comp.decoded("dtstart"),
            comp.decoded("dtend"),
            str(comp.get("summary")),
        )
        if isinstance(s, datetime):
            last = e.date() - timedelta(days=1) if e.time() == time(0) and e > s else e.date()
            first = s.date()
        else:
            first, last = s, e - timedelta(days=1)
        expected.extend((first + timedelta(days=k), name) for k in range((last - first).days + 1))
    assert sorted(parse_ics(path)) == sorted(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ics(vevent("DTSTART;VALUE=DATE:20261301")),
            r"cal\.ics:5: '20261301' is not an iCalendar DATE",
        ),
        (ics(vevent("SUMMARY:no start")), r"cal\.ics:4: VEVENT without DTSTART"),
        (
            ics(vevent("DTSTART;VALUE=DATE:20260101", "RRULE:FREQ=YEARLY")),
            r"cal\.ics:6: RRULE: repeating events",
        ),
        (
            ics(vevent("DTSTART;VALUE=DATE:20260105", "DTEND;VALUE=DATE:20260101")),
            r"cal\.ics:6: .*ends before",
        ),
        (
            ics(vevent("DTSTART;VALUE=DATE:20260105", "DTEND:20260106T000000Z")),
            r"cal\.ics:6: DTEND is a date-time",
        ),
        (
            ics(vevent("DTSTART;TZID=Mars/Olympus:20260105T100000")),
            r"cal\.ics:5: TZID 'Mars/Olympus'",
        ),
        (
            ics(vevent("DTSTART;VALUE=DATE:20260105", "DURATION:2 days")),
            r"cal\.ics:6: '2 days' is not",
        ),
        (
            ics(vevent("DTSTART;VALUE=DATE:20260105", "DTSTART;VALUE=DATE:20260106")),
            r"cal\.ics:6: DTSTART appears",
        ),
        (
            ics(vevent("DTSTART;VALUE=DATE:20200101", "DTEND;VALUE=DATE:20260101")),
            r"cal\.ics:6: the event spans",
        ),
        (ics(vevent("just words")), r"cal\.ics:5: expected NAME:VALUE"),
        (
            ics("BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260101\r\n"),
            r"cal\.ics:6: END:VCALENDAR does not close VEVENT",
        ),
        ("BEGIN:VCALENDAR\r\n", r"cal\.ics: BEGIN:VCALENDAR is never closed"),
        (ics("END:VEVENT\r\n"), r"cal\.ics:4: END:VEVENT does not close VCALENDAR"),
        (" folded\r\n" + ics(), r"cal\.ics:1: a continuation line"),
        ("hello\r\n", r"cal\.ics:1: expected NAME:VALUE"),
        ("X-A:1\r\n", r"cal\.ics: not an iCalendar file"),
        (
            vevent("DTSTART;VALUE=DATE:20260101"),
            r"cal\.ics:1: VEVENT outside a VCALENDAR",
        ),
        (ics(vevent("DTSTART;VALUE=DATE:99991231")), r"cal\.ics:4: the event reaches past the year 9999"),
        (ics(vevent("DTSTART:99991231T230000", "DURATION:PT2H")), r"cal\.ics:4: the event reaches past"),
    ],
)
def test_bad_ics_names_the_file_and_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        parse_ics(path)


def test_unreadable_or_binary_ics_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.ics: cannot read"):
        parse_ics(tmp_path / "missing.ics")
    (tmp_path / "bin.ics").write_bytes(b"BEGIN:VCALENDAR\r\n\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.ics: not UTF-8 text \(byte 17\)"):
        parse_ics(tmp_path / "bin.ics")


# --- windows and jobs ------------------------------------------------------------------------


def test_a_window_does_not_open_on_a_holiday_across_a_dst_change(
    tmp_path: Path,
) -> None:
    # America/New_York falls back on 2026-11-01; the night window starts 01:00 local.
    cal = HolidayCalendar(dates=((date(2026, 11, 1), "Company day"),))
    ny = ZoneInfo("America/New_York")
    w = BackupWindow("n", "n", time(1), time(3), "mon-sun", "America/New_York", holidays=cal)
    # The second 01:30 (after the fall-back) is still 2026-11-01 locally: closed.
    second = datetime(2026, 11, 1, 1, 30, tzinfo=ny).replace(fold=1)
    assert not w.is_active(second)
    assert w.holiday_at(second) == "Company day"
    assert w.next_open(second) == datetime(2026, 11, 2, 1, 0, tzinfo=ny)
    # The day before is open, and its interval is not a holiday.
    before = datetime(2026, 10, 31, 1, 30, tzinfo=ny)
    assert w.is_active(before) and w.holiday_at(before) is None
    # A closed hour that is simply outside every interval names no holiday.
    assert w.holiday_at(datetime(2026, 11, 1, 12, 0, tzinfo=ny)) is None


def test_a_long_shutdown_moves_next_open_past_it() -> None:
    days = tuple((date(2026, 12, 1) + timedelta(days=k), "Shutdown") for k in range(45))
    w = BackupWindow(
        "w",
        "w",
        time(22),
        time(4),
        "mon-fri",
        "Europe/Berlin",
        holidays=HolidayCalendar(dates=days),
    )
    # 00:00-04:00 on the 1st still belongs to Monday the 30th, which is no holiday.
    assert w.is_active(datetime(2026, 12, 1, 3, tzinfo=BERLIN))
    assert w.next_open(datetime(2026, 12, 1, 12, tzinfo=BERLIN)) == datetime(2027, 1, 15, 22, 0, tzinfo=BERLIN)


def scheduler(tmp_path: Path, start: datetime) -> tuple[BackupScheduler, FakeManager]:
    clock = FakeClock(start)
    manager = FakeManager(tmp_path, clock=clock)
    return BackupScheduler(manager, clock=clock), manager


def history(s: BackupScheduler, job_id: str) -> list[tuple[datetime, ExecutionStatus, str | None]]:
    return sorted((e.scheduled_for, e.status, e.error) for e in s.history(job_id=job_id))


def test_a_run_on_a_job_holiday_is_skipped_with_the_holidays_name(
    tmp_path: Path,
) -> None:
    s, m = scheduler(tmp_path, datetime(2026, 12, 23, 12, tzinfo=UTC))
    s.add_job(
        ScheduledBackup(
            "n",
            "n",
            "app",
            BackupType.FULL,
            "0 2 * * *",
            tz="Europe/Berlin",
            holidays=HolidayCalendar("DE-BY"),
        )
    )
    for day in (24, 25, 26, 27):
        s.execute_due_jobs(datetime(2026, 12, day, 2, 0, tzinfo=BERLIN))
    got = history(s, "n")
    assert [g[1] for g in got] == [
        ExecutionStatus.COMPLETED,
        ExecutionStatus.SKIPPED,
        ExecutionStatus.SKIPPED,
        ExecutionStatus.COMPLETED,
    ]
    assert got[1][2] == "holiday: Christmas Day (DE-BY)"
    assert got[2][2] == "holiday: Second Day of Christmas (DE-BY)"
    assert len(m.calls) == 2


def test_a_run_in_a_window_closed_for_a_holiday_says_which(tmp_path: Path) -> None:
    s, _m = scheduler(tmp_path, datetime(2026, 12, 24, 12, tzinfo=UTC))
    s.add_window(
        BackupWindow(
            "nights",
            "Nights",
            time(1),
            time(5),
            "mon-sun",
            "Europe/Berlin",
            holidays=HolidayCalendar(dates=((date(2026, 12, 25), "Office closed"),)),
        )
    )
    s.add_job(
        ScheduledBackup(
            "n",
            "n",
            "app",
            BackupType.FULL,
            "0 2 * * *",
            tz="Europe/Berlin",
            window_id="nights",
        )
    )
    s.execute_due_jobs(datetime(2026, 12, 25, 2, 0, tzinfo=BERLIN))
    s.execute_due_jobs(datetime(2026, 12, 26, 2, 0, tzinfo=BERLIN))
    got = history(s, "n")
    assert got[0][1:] == (
        ExecutionStatus.SKIPPED,
        "holiday: Office closed (window nights)",
    )
    assert got[1][1] is ExecutionStatus.COMPLETED


def test_holidays_survive_the_config_file_and_bad_entries_name_the_place(
    tmp_path: Path,
) -> None:
    s, _ = scheduler(tmp_path, datetime(2026, 1, 1, tzinfo=UTC))
    ics_path = write(tmp_path, ics(vevent("DTSTART;VALUE=DATE:20260704", "SUMMARY:Fourth")))
    cal = HolidayCalendar.build("US-NY", [ics_path], ["2026-02-02"])
    assert cal is not None
    s.add_window(BackupWindow("w", "w", time(1), time(5), "mon-sun", holidays=cal))
    s.add_job(ScheduledBackup("j", "j", "app", BackupType.FULL, "0 2 * * *", holidays=cal))
    config = load_config(tmp_path / "scheduler_config.json")
    assert config.windows["w"].holidays == cal and config.jobs["j"].holidays == cal
    assert cal.name_on(date(2026, 7, 4)) == "Independence Day (US-NY); Fourth"
    # The ICS dates were copied: the file can go away without breaking the scheduler.
    ics_path.unlink()
    assert load_config(tmp_path / "scheduler_config.json").jobs["j"].holidays == cal
    raw = json.loads((tmp_path / "scheduler_config.json").read_text())
    raw["jobs"][0]["holidays"]["dates"][0][0] = "2026-02-30"
    (tmp_path / "scheduler_config.json").write_text(json.dumps(raw))
    with pytest.raises(
        ConfigError,
        match=r"scheduler_config\.json: job 'j' field 'holidays\.dates\[0\]'",
    ):
        load_config(tmp_path / "scheduler_config.json")


# --- CLI ---------------------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cron_next_marks_the_skipped_occurrences(tmp_path: Path) -> None:
    r = invoke(
        "cron",
        "next",
        "0 2 * * *",
        "-n",
        "4",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-12-24T03:00",
        "--holidays",
        "DE-BY",
        "--exclude-date",
        "2026-12-27",
        "--json",
    )
    data = json.loads(r.output)
    assert data["skipped"] == [
        {"time": "2026-12-25T02:00:00+01:00", "holiday": "Christmas Day (DE-BY)"},
        {
            "time": "2026-12-26T02:00:00+01:00",
            "holiday": "Second Day of Christmas (DE-BY)",
        },
        {"time": "2026-12-27T02:00:00+01:00", "holiday": "excluded date"},
    ]
    text = invoke(
        "cron",
        "next",
        "0 2 * * *",
        "-n",
        "2",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-12-24T03:00",
        "--holidays",
        "DE-BY",
    ).output
    assert "2026-12-25T02:00:00+01:00  skipped: Christmas Day (DE-BY)" in text


def test_cron_next_with_a_bad_calendar_file_is_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path, ics(vevent("DTSTART;VALUE=DATE:2026")))
    r = CliRunner().invoke(cli, ["cron", "next", "0 2 * * *", "--holidays-file", str(path)])
    assert r.exit_code == 2
    assert f"{path}:5: '2026' is not an iCalendar DATE" in r.output


def test_job_and_window_add_take_holidays_and_job_list_shows_them(
    tmp_path: Path,
) -> None:
    repo = str(tmp_path)
    assert (
        invoke(
            "--repo",
            repo,
            "window",
            "add",
            "off",
            "--preset",
            "off-hours",
            "--holidays",
            "FR",
        ).exit_code
        == 0
    )
    r = invoke(
        "--repo",
        repo,
        "job",
        "add",
        "nightly",
        "--db",
        "app",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--holidays",
        "DE-BY",
        "--exclude-date",
        "2026-08-08",
    )
    assert r.exit_code == 0, r.output
    [job] = json.loads(invoke("--repo", repo, "job", "list", "--json").output)["jobs"]
    assert job["holidays"]["region"] == "DE-BY"
    assert job["holidays"]["dates"] == [["2026-08-08", "excluded date"]]
    assert "DE-BY + 1 date" in invoke("--repo", repo, "job", "list").output
    [window] = json.loads(invoke("--repo", repo, "window", "list", "--json").output)
    assert window["holidays"] == {"region": "FR"}


def test_calendars_of_one_region_share_the_packages_calendar() -> None:
    # Building the package's calendar costs ~1.5 ms; a config of 10,000 jobs builds it once.
    a, b = HolidayCalendar("DE-BY"), HolidayCalendar("de-by")
    assert a._country is b._country and a == b
    assert HolidayCalendar("DE")._country is not a._country


_ICS_LINES = st.sampled_from(
    [
        "BEGIN:VCALENDAR",
        "END:VCALENDAR",
        "BEGIN:VEVENT",
        "END:VEVENT",
        "DTSTART;VALUE=DATE:20261224",
        "DTSTART:20261224T230000Z",
        "DTSTART;TZID=Europe/Berlin:20260329T023000",
        "DTEND;VALUE=DATE:20261227",
        "DTEND:20261225T010000Z",
        "DURATION:P1DT2H",
        "SUMMARY:Feiertag",
        " folded",
        "RRULE:FREQ=YEARLY",
        "X-JUNK",
        "DTSTART;VALUE=DATE:99991231",
    ]
)


@settings(deadline=None, max_examples=300)
@given(
    lines=st.lists(st.one_of(_ICS_LINES, st.text(st.characters(exclude_categories=["Cs"]), max_size=30)), max_size=14)
)
def test_any_damaged_calendar_reads_or_fails_with_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.ics"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    try:
        got = parse_ics(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert all(isinstance(d, date) and isinstance(n, str) for d, n in got)
