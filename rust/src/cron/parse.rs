//! Expression-level parsing: whitespace-separated fields and the `@` macros.

use super::error::CronError;
use super::field::{Field, FieldKind};
use super::schedule::Schedule;

/// The macros Vixie cron and cronie accept (`@reboot` is not a time and is refused).
fn expand_macro(word: &str) -> Result<&'static str, CronError> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return Err(CronError::UnknownMacro(word.to_string())),
    })
}

/// Parses a 5-field expression or a macro. `seed` spreads `H` values (e.g. the job id).
pub fn parse(expr: &str, seed: &str) -> Result<Schedule, CronError> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(CronError::Empty);
    }
    let text = if trimmed.starts_with('@') {
        let mut words = trimmed.split_whitespace();
        let word = words.next().unwrap_or("");
        let n = words.count();
        if n > 0 {
            return Err(CronError::field(
                "macro",
                format!("{word} takes no fields, got {n} more"),
            ));
        }
        expand_macro(word)?
    } else {
        trimmed
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(CronError::FieldCount(parts.len()));
    }
    let mut fields = Vec::with_capacity(5);
    for (kind, part) in FieldKind::ALL.iter().zip(&parts) {
        fields.push(Field::parse(*kind, part, seed)?);
    }
    let fields: [Field; 5] = match fields.try_into() {
        Ok(f) => f,
        Err(_) => return Err(CronError::FieldCount(parts.len())),
    };
    Schedule::from_fields(fields, [parts[0], parts[1], parts[2], parts[3], parts[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fields() {
        assert_eq!(
            parse("* * * * * *", "").unwrap_err().to_string(),
            "expected 5 fields, got 6"
        );
        assert_eq!(parse("* * *", "").unwrap_err().to_string(), "expected 5 fields, got 3");
        assert!(parse("   ", "").is_err());
    }

    #[test]
    fn expands_macros() {
        assert_eq!(parse("@daily", "").unwrap().normalized(), "0 0 * * *");
        assert_eq!(parse("@ANNUALLY", "").unwrap().normalized(), "0 0 1 1 *");
        assert_eq!(parse("@weekly", "").unwrap().normalized(), "0 0 * * 0");
        assert!(parse("@reboot", "").unwrap_err().to_string().contains("unknown macro"));
    }

    #[test]
    fn rejects_schedules_that_never_fire() {
        let e = parse("0 0 30 2 *", "").unwrap_err().to_string();
        assert!(e.starts_with("the expression can never fire"), "{e}");
        assert!(parse("0 0 31 4,6,9,11 *", "").is_err());
        assert!(parse("0 0 30 2 1", "").is_ok(), "OR rule: any Monday in February");
        assert!(parse("0 0 */30 2 *", "").is_ok(), "*/30 is days 1 and 31");
        assert!(parse("0 0 31 2 5#5", "").is_ok(), "a fifth Friday in a leap February");
        assert!(parse("0 0 * 2 *", "").is_ok());
    }

    #[test]
    fn hashed_fields_are_stable_per_seed() {
        let a = parse("H H * * *", "job-a").unwrap();
        assert_eq!(a, parse("H H * * *", "job-a").unwrap());
        assert_eq!(a, parse(a.normalized(), "").unwrap());
        let spread: std::collections::HashSet<String> = (0..50)
            .map(|i| {
                parse("H H * * *", &format!("job-{i}"))
                    .unwrap()
                    .normalized()
                    .to_string()
            })
            .collect();
        assert!(spread.len() > 30);
        let b = parse("H(0-29)/10 * * * *", "x").unwrap();
        let v = b.fields()[0].values();
        assert_eq!(v.len(), 3);
        assert!(v[0] < 10 && v.windows(2).all(|w| w[1] - w[0] == 10));
    }
}
