//! English descriptions ("At 02:00, Monday through Friday"), in the style of
//! cronstrue / crontab.guru: time of day first, then days, then months.

use super::field::Field;
use super::schedule::Schedule;

const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINALS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];

/// Describes a schedule in plain English.
pub fn describe(s: &Schedule) -> String {
    let [mi, h, dom, mo, dow] = s.fields();
    let mut out = time_phrase(mi, h);
    let days = day_phrase(dom, dow, s.day_or);
    if !days.is_empty() {
        out.push_str(", ");
        out.push_str(&days);
    }
    if !mo.is_full() {
        out.push_str(", in ");
        out.push_str(&join_runs(
            &mo.values(),
            |v| MONTH_NAMES[(v - 1) as usize].to_string(),
            " through ",
        ));
    }
    out
}

/// "*/n" written with a star: the step, if the field is exactly that progression.
fn star_step(f: &Field) -> Option<u32> {
    let text = f.normalized();
    text.strip_prefix("*/").and_then(|n| n.parse().ok())
}

fn ordinal_suffix(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn list(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// Values as a list, with runs of three or more written "a through b".
fn join_runs(values: &[u32], name: impl Fn(u32) -> String, through: &str) -> String {
    let mut items = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            items.push(format!("{}{through}{}", name(values[i]), name(values[j])));
        } else {
            items.extend(values[i..=j].iter().map(|v| name(*v)));
        }
        i = j + 1;
    }
    list(&items)
}

fn time_phrase(mi: &Field, h: &Field) -> String {
    let (mv, hv) = (mi.values(), h.values());
    if mv.len() * hv.len() <= 4 {
        let times: Vec<String> = hv
            .iter()
            .flat_map(|hh| mv.iter().map(move |mm| format!("{hh:02}:{mm:02}")))
            .collect();
        return format!("At {}", list(&times));
    }
    let minutes = if mi.is_full() {
        "Every minute".to_string()
    } else if let Some(n) = star_step(mi) {
        format!("Every {n} minutes")
    } else {
        let word = if mv.len() == 1 { "minute" } else { "minutes" };
        format!("At {word} {}", join_runs(&mv, |v| v.to_string(), " through "))
    };
    let hours = if h.is_full() {
        if mi.is_full() || star_step(mi).is_some() {
            String::new()
        } else {
            " past every hour".to_string()
        }
    } else if let Some(n) = star_step(h) {
        format!(", every {n} hours")
    } else if hv.len() >= 2 && hv.windows(2).all(|w| w[1] == w[0] + 1) {
        format!(", between {:02}:00 and {:02}:59", hv[0], hv[hv.len() - 1])
    } else {
        let word = if hv.len() == 1 { "hour" } else { "hours" };
        format!(" past {word} {}", join_runs(&hv, |v| v.to_string(), " through "))
    };
    minutes + &hours
}

fn dom_phrase(dom: &Field) -> Vec<String> {
    let mut parts = Vec::new();
    if dom.star {
        if let Some(n) = star_step(dom) {
            parts.push(format!("every {} day of the month", ordinal_suffix(n)));
        } else if !dom.is_full() {
            parts.push(format!(
                "on day {} of the month",
                join_runs(&dom.values(), |v| v.to_string(), " through ")
            ));
        }
    } else if !dom.values().is_empty() {
        parts.push(format!(
            "on day {} of the month",
            join_runs(&dom.values(), |v| v.to_string(), " through ")
        ));
    }
    if dom.dom.last {
        parts.push("on the last day of the month".into());
    }
    if dom.dom.last_weekday {
        parts.push("on the last weekday of the month".into());
    }
    for n in 1..32 {
        if dom.dom.nearest_weekday & (1 << n) != 0 {
            parts.push(format!("on the weekday nearest day {n} of the month"));
        }
    }
    parts
}

fn dow_phrase(dow: &Field) -> Vec<String> {
    let mut parts = Vec::new();
    let values = dow.values();
    let every_day = dow.star && dow.is_full();
    if !values.is_empty() && !every_day {
        // Monday-first order reads naturally ("Monday through Sunday" is rare; keep cron's).
        let named = join_runs(&values, |v| DAY_NAMES[v as usize].to_string(), " through ");
        parts.push(
            if values.len() >= 3 && named.contains(" through ") && !named.contains(',') {
                named
            } else {
                format!("on {named}")
            },
        );
    }
    for (d, name) in DAY_NAMES.iter().enumerate() {
        for (n, ordinal) in ORDINALS.iter().enumerate() {
            if dow.dow.nth[d] & (1 << n) != 0 {
                parts.push(format!("on the {ordinal} {name} of the month"));
            }
        }
        if dow.dow.last & (1 << d) != 0 {
            parts.push(format!("on the last {name} of the month"));
        }
    }
    parts
}

fn day_phrase(dom: &Field, dow: &Field, day_or: bool) -> String {
    let d = dom_phrase(dom);
    let w = dow_phrase(dow);
    let dl = list_or(&d);
    let wl = list_or(&w);
    match (dl.is_empty(), wl.is_empty()) {
        (true, true) => String::new(),
        (false, true) => dl,
        (true, false) => wl,
        (false, false) if day_or => format!("{dl} or {wl}"),
        (false, false) => format!("{dl}, if it is also {}", wl.trim_start_matches("on ")),
    }
}

fn list_or(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn d(e: &str) -> String {
        describe(&parse(e, "").unwrap())
    }

    #[test]
    fn describes_common_schedules() {
        assert_eq!(d("0 2 * * 1-5"), "At 02:00, Monday through Friday");
        assert_eq!(d("* * * * *"), "Every minute");
        assert_eq!(d("*/15 * * * *"), "Every 15 minutes");
        assert_eq!(
            d("0 9-17 * * 1-5"),
            "At minute 0, between 09:00 and 17:59, Monday through Friday"
        );
        assert_eq!(
            d("30 4 1,15 * 5"),
            "At 04:30, on day 1 and 15 of the month or on Friday"
        );
        assert_eq!(d("0 0 29 2 *"), "At 00:00, on day 29 of the month, in February");
        assert_eq!(d("0 0 L * *"), "At 00:00, on the last day of the month");
        assert_eq!(
            d("0 0 1 * 5#3"),
            "At 00:00, on day 1 of the month or on the third Friday of the month"
        );
        assert_eq!(
            d("0 0 */2 * 1"),
            "At 00:00, every 2nd day of the month, if it is also Monday"
        );
        assert_eq!(
            d("15 * * * *"),
            "At 15 past every hour".replace("At 15", "At minute 15")
        );
        assert_eq!(d("0 0,12 * 1-3 *"), "At 00:00 and 12:00, in January through March");
    }
}
