//! When a periodic job's next tick falls: a cron expression read in an IANA time zone,
//! with the daylight-saving rules of Vixie cron.
//!
//! croner matches the pattern against the wall clock; this module walks real time (UTC
//! seconds) so that ticks always move forward, and applies the rules at each change of
//! offset:
//!
//! - **Spring forward** (wall times skipped): a job at a fixed time of day (a single second,
//!   minute and hour, e.g. `30 2 * * *`) whose time is skipped runs at the first instant
//!   after the jump; interval jobs (`*/15 * * * *`) simply have no ticks in the gap.
//! - **Fall back** (wall times repeated): a fixed-time job runs once, at the first
//!   occurrence; an interval job runs in both, so an hourly job still runs every hour.
//!
//! "Fixed time" is croner's classification (one value each for second, minute and hour);
//! Vixie cron's is wider (any minute and hour fields not starting with `*`), so a list such
//! as `0 2,14 * * *` is an interval job here: its 02:00 has no tick on a spring-forward day
//! and two on a fall-back day.

use chrono::{FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};

/// The longest a clock change moves the wall clock (Antarctica/Troll moves 2 h; 3 h covers
/// every zone with room to spare).
const LONGEST_SHIFT_SECS: i64 = 3 * 3600;
/// Clock changes are far more than a day apart, so probing once a day finds the first.
const PROBE_STEP_SECS: i64 = 86_400;

/// A cron expression in a time zone.
///
/// ```
/// use psychiq::periodic::Schedule;
/// let nightly = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
/// // 2025-07-01 00:00 UTC: the next 03:00 in Berlin (UTC+2 in summer) is 01:00 UTC.
/// assert_eq!(nightly.next_after(1_751_328_000), Some(1_751_331_600));
/// assert!(Schedule::parse("0 3 * *", "UTC").unwrap_err().contains("5"));
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    fixed_time: bool,
    expression: String,
}

impl Schedule {
    /// Reads `expression` (5 fields, `minute hour day month weekday`, or 6 with seconds
    /// first; names such as `MON` and `JAN`, lists, ranges, steps, and croner's `L`, `#`
    /// and `W`; or a nickname such as `@daily`) in the IANA zone `tz` (`"UTC"`,
    /// `"Europe/Berlin"`). The error says what is wrong, and rejects expressions that never
    /// fire (`0 0 30 2 *`).
    pub fn parse(expression: &str, tz: &str) -> Result<Schedule, String> {
        let expression = expression.trim();
        let fields = expression.split_whitespace().count();
        if !(expression.starts_with('@') || fields == 5 || fields == 6) {
            return Err(format!(
                "cron {expression:?} has {fields} fields; give 5 (minute hour day month \
                 weekday, e.g. \"0 3 * * *\") or 6 with seconds first (\"*/10 * * * * *\")"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| format!("cron {expression:?}: {e}"))?;
        let tz: Tz = tz.parse().map_err(|_| {
            format!(
                "unknown time zone {tz:?}; give an IANA name such as \"UTC\" or \"Europe/Berlin\""
            )
        })?;
        let schedule = Schedule {
            fixed_time: cron.determine_job_type() == JobType::FixedTime,
            cron,
            tz,
            expression: expression.to_string(),
        };
        if schedule.next_after(Utc::now().timestamp()).is_none() {
            return Err(format!(
                "cron {expression:?} never fires (a date that does not exist?)"
            ));
        }
        Ok(schedule)
    }

    /// `expression` read in UTC (see [`Schedule::parse`] for what it may hold); go on with
    /// [`Schedule::in_zone`] for another zone. The error says what is wrong.
    ///
    /// ```
    /// use psychiq::periodic::Schedule;
    /// let nightly = Schedule::cron("0 3 * * *")?.in_zone("Europe/Berlin")?;
    /// assert_eq!(nightly.time_zone(), "Europe/Berlin");
    /// assert!(Schedule::cron("0 3 * *").is_err());
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn cron(expression: &str) -> Result<Schedule, crate::Error> {
        Schedule::parse(expression, "UTC").map_err(crate::Error::Config)
    }

    /// The same expression read in the IANA zone `tz` (`"Europe/Berlin"`): `0 3 * * *` is
    /// 03:00 there, summer and winter.
    pub fn in_zone(self, tz: &str) -> Result<Schedule, crate::Error> {
        Schedule::parse(&self.expression, tz).map_err(crate::Error::Config)
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn time_zone(&self) -> &str {
        self.tz.name()
    }

    /// The first tick strictly after `after` (Unix seconds), in Unix seconds; `None` if
    /// there is none within croner's search range (a year).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        // The offset in force at `from` itself: a change one second later is then seen by
        // `first_change` and its rule applied.
        let mut from = after;
        if self.fixed_time {
            from = self.past_repeated_wall_times(after);
        }
        let mut offset = self.offset_at(from);
        // Each pass crosses at most one clock change; a year holds a handful.
        for _ in 0..16 {
            let local = offset.timestamp_opt(from, 0).single()?;
            let candidate = self
                .cron
                .find_next_occurrence(&local, false)
                .ok()?
                .timestamp();
            let Some(change) = self.first_change(from, candidate, offset) else {
                return Some(candidate);
            };
            let new = self.offset_at(change);
            let shift = i64::from(new.local_minus_utc() - offset.local_minus_utc());
            if shift > 0 {
                // Spring forward: wall times from `change` (old offset) to `change` (new
                // offset) never happen. A fixed-time job whose time was skipped runs now.
                if self.fixed_time && candidate < change + shift {
                    return Some(change);
                }
                from = change - 1;
            } else if self.fixed_time {
                // Fall back: the repeated wall times already had their tick.
                from = change - shift - 1;
            } else {
                from = change - 1;
            }
            offset = new;
        }
        None
    }

    /// For a fixed-time job, `after` moved past the second pass of repeated wall times when
    /// it falls inside them (a process started during the repeated hour must not run a job
    /// the first pass ran).
    fn past_repeated_wall_times(&self, after: i64) -> i64 {
        let start = after - LONGEST_SHIFT_SECS;
        let before = self.offset_at(start);
        if let Some(change) = self.first_change(start, after, before) {
            let shift =
                i64::from(self.offset_at(change).local_minus_utc() - before.local_minus_utc());
            if shift < 0 && after < change - shift {
                return change - shift - 1;
            }
        }
        after
    }

    fn offset_at(&self, secs: i64) -> FixedOffset {
        match self.tz.timestamp_opt(secs, 0).single() {
            Some(time) => time.offset().fix(),
            None => FixedOffset::east_opt(0).expect("zero offset"),
        }
    }

    /// The first second in `(from, to]` whose offset is not `offset`.
    fn first_change(&self, from: i64, to: i64, offset: FixedOffset) -> Option<i64> {
        let mut probe = from;
        while probe < to {
            let next = (probe + PROBE_STEP_SECS).min(to);
            if self.offset_at(next) != offset {
                let (mut same, mut differs) = (probe, next);
                while differs - same > 1 {
                    let mid = same + (differs - same) / 2;
                    if self.offset_at(mid) == offset {
                        same = mid;
                    } else {
                        differs = mid;
                    }
                }
                return Some(differs);
            }
            probe = next;
        }
        None
    }
}

/// Unix seconds as an RFC 3339 time in `tz` (for the dashboard's pages).
#[cfg(any(feature = "web", test))]
pub(crate) fn format_in(secs: i64, tz: &str) -> String {
    let Some(utc) = chrono::DateTime::<Utc>::from_timestamp(secs, 0) else {
        return secs.to_string();
    };
    match tz.parse::<Tz>() {
        Ok(tz) => utc
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => utc.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp()
    }

    fn ticks(schedule: &Schedule, from: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..n {
            at = schedule.next_after(at).unwrap();
            out.push(at);
        }
        out
    }

    #[test]
    fn five_and_six_fields_and_utc() {
        let minutely = Schedule::parse("* * * * *", "UTC").unwrap();
        let t = utc(2026, 1, 1, 12, 0, 30);
        assert_eq!(minutely.next_after(t), Some(utc(2026, 1, 1, 12, 1, 0)));
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            ticks(&every_second, t, 3),
            vec![t + 1, t + 2, t + 3],
            "six fields: seconds first"
        );
        let weekdays = Schedule::parse("0 9 * * MON-FRI", "UTC").unwrap();
        // Friday 2026-01-02 10:00 → Monday 2026-01-05 09:00.
        assert_eq!(
            weekdays.next_after(utc(2026, 1, 2, 10, 0, 0)),
            Some(utc(2026, 1, 5, 9, 0, 0))
        );
        let daily = Schedule::parse("@daily", "UTC").unwrap();
        assert_eq!(
            daily.next_after(utc(2026, 1, 2, 10, 0, 0)),
            Some(utc(2026, 1, 3, 0, 0, 0))
        );
    }

    #[test]
    fn wrong_expressions_and_zones_say_what_to_do() {
        assert!(Schedule::parse("0 3 * *", "UTC").unwrap_err().contains("5"));
        assert!(Schedule::parse("0 0 3 * * * 2026", "UTC").is_err());
        assert!(Schedule::parse("61 * * * *", "UTC").is_err());
        assert!(
            Schedule::parse("0 3 * * *", "Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
        assert!(
            Schedule::parse("0 0 30 2 *", "UTC")
                .unwrap_err()
                .contains("never")
        );
    }

    #[test]
    fn a_fixed_time_skipped_by_spring_forward_runs_right_after_the_jump() {
        // Berlin, 2025-03-30: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            ticks(&s, utc(2025, 3, 29, 12, 0, 0), 2),
            vec![utc(2025, 3, 30, 1, 0, 0), utc(2025, 3, 31, 0, 30, 0)]
        );
        // A time after the gap is simply in the new offset.
        let s = Schedule::parse("30 3 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(utc(2025, 3, 29, 12, 0, 0)),
            Some(utc(2025, 3, 30, 1, 30, 0))
        );
    }

    #[test]
    fn interval_jobs_skip_the_gap_and_keep_their_rhythm_in_real_time() {
        let s = Schedule::parse("*/30 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            ticks(&s, utc(2025, 3, 30, 0, 0, 0), 3),
            // 01:30 CET, then 03:00 and 03:30 CEST: 02:xx never happens.
            vec![
                utc(2025, 3, 30, 0, 30, 0),
                utc(2025, 3, 30, 1, 0, 0),
                utc(2025, 3, 30, 1, 30, 0)
            ]
        );
        // Berlin, 2025-10-26: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:xx twice.
        assert_eq!(
            ticks(&s, utc(2025, 10, 25, 23, 59, 0), 6),
            vec![
                utc(2025, 10, 26, 0, 0, 0),  // 02:00 CEST
                utc(2025, 10, 26, 0, 30, 0), // 02:30 CEST
                utc(2025, 10, 26, 1, 0, 0),  // 02:00 CET
                utc(2025, 10, 26, 1, 30, 0), // 02:30 CET
                utc(2025, 10, 26, 2, 0, 0),  // 03:00 CET
                utc(2025, 10, 26, 2, 30, 0),
            ]
        );
        let hourly = Schedule::parse("0 * * * *", "America/New_York").unwrap();
        // New York, 2025-11-02: 02:00 EDT becomes 01:00 EST at 06:00 UTC.
        assert_eq!(
            ticks(&hourly, utc(2025, 11, 2, 4, 30, 0), 3),
            vec![
                utc(2025, 11, 2, 5, 0, 0), // 01:00 EDT
                utc(2025, 11, 2, 6, 0, 0), // 01:00 EST
                utc(2025, 11, 2, 7, 0, 0), // 02:00 EST
            ]
        );
    }

    #[test]
    fn a_fixed_time_repeated_by_fall_back_runs_once() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            ticks(&s, utc(2025, 10, 25, 12, 0, 0), 2),
            // 02:30 CEST on the 26th, then 02:30 CET on the 27th: not 02:30 CET on the 26th.
            vec![utc(2025, 10, 26, 0, 30, 0), utc(2025, 10, 27, 1, 30, 0)]
        );
        // A process that starts during the second 02:xx does not run it again.
        assert_eq!(
            s.next_after(utc(2025, 10, 26, 1, 10, 0)),
            Some(utc(2025, 10, 27, 1, 30, 0))
        );
    }

    #[test]
    fn a_fixed_time_one_second_before_the_change_is_not_repeated_or_lost() {
        // 02:59:59 CEST, one second before 03:00 CEST becomes 02:00 CET.
        let s = Schedule::parse("59 59 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(utc(2025, 10, 26, 0, 59, 59)),
            Some(utc(2025, 10, 27, 1, 59, 59))
        );
        // 01:59:59 CET, one second before 02:00 CET becomes 03:00 CEST: 02:30 is skipped
        // and runs at 03:00 CEST.
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(utc(2025, 3, 30, 0, 59, 59)),
            Some(utc(2025, 3, 30, 1, 0, 0))
        );
    }

    #[test]
    fn weekday_mornings_follow_the_zone_across_the_change() {
        // New York, 2025-03-09: EST (UTC-5) becomes EDT (UTC-4).
        let s = Schedule::parse("0 9 * * 1-5", "America/New_York").unwrap();
        assert_eq!(
            ticks(&s, utc(2025, 3, 7, 12, 0, 0), 2),
            vec![utc(2025, 3, 7, 14, 0, 0), utc(2025, 3, 10, 13, 0, 0)]
        );
        // A yearly job crosses two changes in one search.
        let s = Schedule::parse("0 12 1 1 *", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(utc(2025, 1, 2, 0, 0, 0)),
            Some(utc(2026, 1, 1, 11, 0, 0))
        );
    }

    #[test]
    fn times_print_in_their_zone() {
        assert_eq!(
            format_in(utc(2025, 7, 1, 1, 0, 0), "Europe/Berlin"),
            "2025-07-01 03:00:00 CEST"
        );
    }
}
