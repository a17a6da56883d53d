//! Job schedules, pure (no tokio, no clock; the scheduler passes `now`): cron
//! expressions parsed once, at load time, into a `CronSchedule` value (a bad one is a
//! config error naming its key), five-field crontab expressions converted to the
//! `cron` crate's seconds-first form, and when a job is due next (missed firings
//! dropped, not caught up) with its random start delay (jitter).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed schedule with the expression as the user wrote it (for logs and `check`).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub expression: String,
    pub schedule: cron::Schedule,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl FromStr for CronSchedule {
    type Err = String;
    fn from_str(expression: &str) -> Result<Self, String> {
        Ok(Self {
            expression: expression.to_owned(),
            schedule: parse_schedule(expression)?,
        })
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for CronSchedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expression)
    }
}

/// Parse a cron expression: 5 fields (minute hour day month weekday, as crontab),
/// or 6/7 fields with seconds first (and a year last), as the `cron` crate reads them.
pub fn parse_schedule(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let normalized = match fields.len() {
        5 => crontab_to_cron(&fields)?,
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "{expression:?} has {n} fields; use 5 (\"*/30 * * * *\") or 6-7 with seconds first"
            ))
        }
    };
    cron::Schedule::from_str(&normalized).map_err(|e| {
        // The crate's message draws a caret under the expression over several lines;
        // keep its last line, the reason, so the error stays one line.
        let text = e.to_string();
        let reason = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
            .unwrap_or("unparsable")
            .to_owned();
        format!("{expression:?} is not a valid cron expression: {reason}")
    })
}

/// Convert a 5-field crontab expression to the `cron` crate's 6-field form: prepend a
/// seconds field of `0` and renumber weekdays (crontab: 0 or 7 = Sunday … 6 = Saturday;
/// the `cron` crate: 1 = Sunday … 7 = Saturday).
fn crontab_to_cron(fields: &[&str]) -> Result<String, String> {
    let dow = fields[4]
        .split(',')
        .map(crontab_weekday_item)
        .collect::<Result<Vec<_>, _>>()?
        .join(",");
    Ok(format!(
        "0 {} {} {} {} {dow}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

fn crontab_weekday_item(item: &str) -> Result<String, String> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    let suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
    let number = |t: &str| -> Result<Option<u8>, String> {
        if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            let n: u8 = t
                .parse()
                .map_err(|_| format!("weekday {t:?} is out of range 0-7"))?;
            if n > 7 {
                return Err(format!("weekday {t} is out of range 0-7"));
            }
            Ok(Some(n))
        } else {
            Ok(None) // a name (`mon`) or `*`/`?`: same meaning in both dialects
        }
    };
    let shift = |n: u8| n % 7 + 1;
    match base.split_once('-') {
        Some((a, b)) => match (number(a)?, number(b)?) {
            (Some(a), Some(7)) if a > 0 && step.is_none() => {
                // `5-7` (Friday to Sunday) wraps in the crate's numbering.
                Ok(format!("{}-7,1", shift(a)))
            }
            (Some(a), Some(b)) if (b == 7 && a > 0) => Err(format!(
                "weekday range {item:?} with a step wraps past Saturday; write it as a list"
            )),
            (Some(a), Some(b)) => Ok(format!("{}-{}{suffix}", shift(a), shift(b))),
            (None, None) => Ok(item.to_owned()),
            _ => Err(format!(
                "weekday range {item:?} mixes names and numbers; use one or the other"
            )),
        },
        None => match number(base)? {
            Some(n) => Ok(format!("{}{suffix}", shift(n))),
            None => Ok(item.to_owned()),
        },
    }
}

/// The first instant of `schedule` strictly after `after`.
pub fn next_fire(schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&after).next()
}

/// A random delay in `0..=jitter` (millisecond resolution).
pub fn jitter_delay(jitter: Duration, rng: &mut impl Rng) -> Duration {
    let max = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rng.random_range(0..=max))
}

/// The instant after `previous` (the last scheduled instant, if any) at which the
/// job is due next. A due time already behind `now` (host suspended, clock stepped)
/// is not caught up: missed firings are dropped and the next one ahead is used.
pub fn next_due(
    schedule: &cron::Schedule,
    previous: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let candidate = next_fire(schedule, previous.unwrap_or(now))?;
    if candidate < now {
        next_fire(schedule, now)
    } else {
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, h, m, s).unwrap()
    }

    #[test]
    fn missed_firings_are_not_caught_up() {
        let s = crate::daemon::schedule::parse_schedule("0 * * * *").unwrap();
        // Last due 08:00, host slept until 11:20: next is 12:00, not 09:00.
        assert_eq!(
            next_due(&s, Some(at(8, 0, 0)), at(11, 20, 0)),
            Some(at(12, 0, 0))
        );
        assert_eq!(
            next_due(&s, Some(at(8, 0, 0)), at(8, 0, 30)),
            Some(at(9, 0, 0))
        );
        assert_eq!(next_due(&s, None, at(8, 0, 0)), Some(at(9, 0, 0)));
    }

    #[test]
    fn zero_jitter_is_zero() {
        assert_eq!(
            jitter_delay(Duration::ZERO, &mut rand::rng()),
            Duration::ZERO
        );
        for _ in 0..100 {
            assert!(
                jitter_delay(Duration::from_secs(5), &mut rand::rng()) <= Duration::from_secs(5)
            );
        }
    }

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        parse_schedule(expr).unwrap().after(&after).next().unwrap()
    }

    #[test]
    fn five_field_expression_gets_seconds_prepended() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 13).unwrap();
        assert_eq!(
            next("*/30 * * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap()
        );
        assert_eq!(
            next("0 3 * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 3, 3, 0, 0).unwrap()
        );
    }

    #[test]
    fn six_and_seven_field_expressions_are_taken_as_is() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 13).unwrap();
        assert_eq!(
            next("*/20 * * * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 20).unwrap()
        );
        assert_eq!(
            next("0 0 12 * * * 2027", t),
            Utc.with_ymd_and_hms(2027, 1, 1, 12, 0, 0).unwrap()
        );
    }

    #[test]
    fn crontab_weekdays_are_renumbered() {
        // 2026-03-02 is a Monday.
        let monday = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let sunday = Utc.with_ymd_and_hms(2026, 3, 8, 4, 0, 0).unwrap();
        assert_eq!(next("0 4 * * 0", monday), sunday);
        assert_eq!(next("0 4 * * 7", monday), sunday);
        assert_eq!(next("0 4 * * sun", monday), sunday);
        assert_eq!(
            next("0 4 * * 1-5", monday),
            Utc.with_ymd_and_hms(2026, 3, 2, 4, 0, 0).unwrap()
        );
        // Friday to Sunday wraps.
        let saturday = Utc.with_ymd_and_hms(2026, 3, 7, 0, 0, 0).unwrap();
        assert_eq!(
            next("0 4 * * 5-7", saturday),
            Utc.with_ymd_and_hms(2026, 3, 7, 4, 0, 0).unwrap()
        );
        assert_eq!(next("0 4 * * 5-7", sunday), {
            // after Sunday 04:00 the next is Friday.
            Utc.with_ymd_and_hms(2026, 3, 13, 4, 0, 0).unwrap()
        });
        assert_eq!(
            crontab_to_cron(&["0", "0", "*", "*", "1,3"]).unwrap(),
            "0 0 0 * * 2,4"
        );
        assert_eq!(
            crontab_to_cron(&["0", "0", "*", "*", "*/2"]).unwrap(),
            "0 0 0 * * */2"
        );
    }

    #[test]
    fn bad_expressions_say_why_in_one_line() {
        let msg = parse_schedule("61 * * * *").unwrap_err();
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(msg.contains("Minutes"), "{msg}");
        assert!(parse_schedule("* * *").unwrap_err().contains("3 fields"));
        assert!("every tuesday".parse::<CronSchedule>().is_err());
    }
}
