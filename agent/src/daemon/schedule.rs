//! When a job is due: the next cron instant after a previous one, with missed
//! firings dropped rather than caught up, and the random start delay (jitter).
//!
//! Pure: no tokio, no clock; the scheduler passes `now`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

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
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, h, m, s).unwrap()
    }

    #[test]
    fn missed_firings_are_not_caught_up() {
        let s = crate::daemon::settings::parse_schedule("0 * * * *").unwrap();
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
}
