//! MySQL's date and time values as Canopy stores them (ISO-8601 text, `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`, UTC) and
//! the arithmetic on them: reading the forms MySQL accepts, DATE_FORMAT and STR_TO_DATE, INTERVAL arithmetic with
//! month-end clamping, differences, the part extractors and MySQL's week numbering (`calc_week`). Calendar math is
//! proleptic Gregorian on day numbers counted from 1970-01-01; no clock is read here.

/// Whether a value is a date alone or a date with a time of day (what its text form shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Date,
    DateTime,
}

/// One calendar date and time of day, valid by construction (month 1..=12, day within the month, years 0..=9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
    pub kind: Kind,
}

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days from 1970-01-01 to 0000-01-01 as MySQL's TO_DAYS counts them (TO_DAYS('1970-01-01') = 719528).
const TO_DAYS_EPOCH: i64 = 719_528;

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
/// Monday first, as MySQL's WEEKDAY() counts.
const DAY_NAMES: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

pub(crate) fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl DateTime {
    /// A validated value; None outside MySQL's range (years 0..=9999) or for an impossible date or time.
    pub(crate) fn new(year: i64, month: u32, day: u32, time: (u32, u32, u32, u32), kind: Kind) -> Option<DateTime> {
        let (hour, minute, second, micro) = time;
        let valid = (0..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60
            && micro < 1_000_000;
        valid.then_some(DateTime { year, month, day, hour, minute, second, micro, kind })
    }

    /// The value `micros` microseconds after 1970-01-01 00:00:00 (UTC).
    pub(crate) fn from_epoch_micros(micros: i64, kind: Kind) -> Option<DateTime> {
        let days = micros.div_euclid(MICROS_PER_DAY);
        let rest = micros.rem_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let seconds = rest / MICROS_PER_SECOND;
        let time = (
            (seconds / 3600) as u32,
            (seconds / 60 % 60) as u32,
            (seconds % 60) as u32,
            (rest % MICROS_PER_SECOND) as u32,
        );
        DateTime::new(year, month, day, time, kind)
    }

    pub(crate) fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    pub(crate) fn epoch_micros(&self) -> i64 {
        self.days() * MICROS_PER_DAY + self.time_micros()
    }

    /// Microseconds since midnight.
    pub(crate) fn time_micros(&self) -> i64 {
        (i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)) * MICROS_PER_SECOND
            + i64::from(self.micro)
    }

    /// 0 = Monday ... 6 = Sunday (MySQL's WEEKDAY).
    pub(crate) fn weekday(&self) -> u32 {
        weekday_of_days(self.days())
    }

    pub(crate) fn day_of_year(&self) -> u32 {
        (self.days() - days_from_civil(self.year, 1, 1) + 1) as u32
    }

    /// MySQL's TO_DAYS: days since year 0.
    pub(crate) fn to_days(self) -> i64 {
        self.days() + TO_DAYS_EPOCH
    }

    /// The text form Canopy stores: `YYYY-MM-DD` for a date, `YYYY-MM-DD HH:MM:SS` for a date and time, with
    /// `.ffffff` when the microseconds are not zero.
    pub(crate) fn render(&self) -> String {
        let date = format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        match self.kind {
            Kind::Date => date,
            Kind::DateTime => format!("{date} {}", render_time(self.time_micros(), self.micro != 0)),
        }
    }
}

/// 0 = Monday ... 6 = Sunday for a day number (1970-01-01 was a Thursday).
fn weekday_of_days(days: i64) -> u32 {
    (days + 3).rem_euclid(7) as u32
}

/// `HH:MM:SS[.ffffff]` of a time of day given in microseconds (hours may exceed 23 for MySQL TIME values).
pub(crate) fn render_time(micros: i64, fraction: bool) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    let seconds = micros / 1_000_000;
    let base = format!("{sign}{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if fraction { format!("{base}.{:06}", micros % 1_000_000) } else { base }
}

/// Reads a date or date-and-time the way MySQL reads one from text: `YYYY-MM-DD`, `YY-MM-DD`, any punctuation as
/// the delimiter, a space or `T` before the time, optional `.ffffff`, or the packed digit forms `YYYYMMDD`,
/// `YYMMDD`, `YYYYMMDDHHMMSS`, `YYMMDDHHMMSS`. Anything after a complete value is ignored (MySQL warns); None for
/// text that holds no valid date.
pub(crate) fn parse(text: &str) -> Option<DateTime> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let rest = &text[digits_end..];
    if digits_end >= 6 && (rest.is_empty() || rest.starts_with('.') || rest.starts_with(char::is_whitespace)) {
        return parse_packed(&text[..digits_end], rest);
    }
    let mut fields: Vec<u32> = Vec::with_capacity(7);
    let mut chars = text.char_indices().peekable();
    let mut year_digits = 0;
    let mut fraction: Option<u32> = None;
    while fields.len() < 6 {
        let start = chars.peek()?.0;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            end = i + 1;
            chars.next();
        }
        if end == start || end - start > 4 {
            return None;
        }
        if fields.is_empty() {
            year_digits = end - start;
        }
        fields.push(text[start..end].parse().ok()?);
        let Some(&(_, sep)) = chars.peek() else { break };
        if fields.len() == 3 && !(sep == ' ' || sep == 'T') {
            break;
        }
        if fields.len() == 6 && sep == '.' {
            chars.next();
            let from = chars.peek().map(|&(i, _)| i)?;
            let mut to = from;
            while let Some(&(i, c)) = chars.peek() {
                if !c.is_ascii_digit() {
                    break;
                }
                to = i + 1;
                chars.next();
            }
            fraction = Some(micro_of_fraction(&text[from..to]));
            break;
        }
        if sep.is_ascii_alphanumeric() && !(fields.len() == 3 && sep == 'T') {
            break;
        }
        chars.next();
        while fields.len() == 3 && chars.peek().is_some_and(|&(_, c)| c == ' ') {
            chars.next();
        }
    }
    let year = widen_year(i64::from(*fields.first()?), year_digits);
    let (month, day) = (*fields.get(1)?, *fields.get(2)?);
    match fields.len() {
        3 => DateTime::new(year, month, day, (0, 0, 0, 0), Kind::Date),
        5 | 6 => {
            let second = fields.get(5).copied().unwrap_or(0);
            DateTime::new(year, month, day, (fields[3], fields[4], second, fraction.unwrap_or(0)), Kind::DateTime)
        }
        _ => None,
    }
}

/// Two-digit years as MySQL reads them: 70..99 are 1970..1999, 00..69 are 2000..2069.
fn widen_year(year: i64, digits: usize) -> i64 {
    match (digits, year) {
        (1 | 2, 0..=69) => year + 2000,
        (1 | 2, _) => year + 1900,
        _ => year,
    }
}

/// Microseconds of a fraction's digits (`5` is 500000; digits past the sixth are cut).
fn micro_of_fraction(digits: &str) -> u32 {
    let mut padded: String = digits.chars().take(6).collect();
    while padded.len() < 6 {
        padded.push('0');
    }
    padded.parse().unwrap_or(0)
}

fn parse_packed(digits: &str, rest: &str) -> Option<DateTime> {
    let n = |range: std::ops::Range<usize>| digits.get(range).and_then(|d| d.parse::<u32>().ok());
    let (year, tail) = match digits.len() {
        8 | 14 => (i64::from(n(0..4)?), 4),
        6 | 12 => (widen_year(i64::from(n(0..2)?), 2), 2),
        _ => return None,
    };
    let (month, day) = (n(tail..tail + 2)?, n(tail + 2..tail + 4)?);
    if digits.len() <= 8 {
        return DateTime::new(year, month, day, (0, 0, 0, 0), Kind::Date);
    }
    let at = tail + 4;
    let micro = rest
        .strip_prefix('.')
        .map_or(0, |f| micro_of_fraction(&f.chars().take_while(char::is_ascii_digit).collect::<String>()));
    let time = (n(at..at + 2)?, n(at + 2..at + 4)?, n(at + 4..at + 6)?, micro);
    DateTime::new(year, month, day, time, Kind::DateTime)
}

/// A number as MySQL reads it for a date: `YYYYMMDD`, `YYYYMMDDHHMMSS` (with a fraction for microseconds).
pub(crate) fn from_number(n: f64) -> Option<DateTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let whole = n.trunc() as u64;
    let fraction = format!("{:.6}", n.fract());
    let rest = fraction.strip_prefix('0').unwrap_or("");
    let digits = whole.to_string();
    parse_packed(&digits, if rest == ".000000" { "" } else { rest })
}

/// A time of day or MySQL TIME value `[-][D ]HH:MM[:SS[.ffffff]]` or packed `HHMMSS`, as microseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (days, clock) = match text.split_once(' ') {
        Some((d, c)) => (d.parse::<i64>().ok()?, c.trim()),
        None => (0, text),
    };
    let (clock, fraction) = match clock.split_once('.') {
        Some((c, f)) => (c, micro_of_fraction(f)),
        None => (clock, 0),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let number = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (number(h)?, number(m)?, 0),
        [h, m, s] => (number(h)?, number(m)?, number(s)?),
        [packed] if packed.len() <= 7 && packed.bytes().all(|b| b.is_ascii_digit()) && !packed.is_empty() => {
            let v: i64 = packed.parse().ok()?;
            (v / 10_000, v / 100 % 100, v % 100)
        }
        _ => return None,
    };
    if m >= 60 || s >= 60 {
        return None;
    }
    let micros = ((days * 24 + h) * 3600 + m * 60 + s) * MICROS_PER_SECOND + i64::from(fraction);
    Some(if negative { -micros } else { micros })
}

/// An INTERVAL unit MySQL accepts with a single number (compound units such as `DAY_HOUR` are not parsed by the
/// SQL front end, so they never arrive here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Microsecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    pub(crate) fn parse(name: &str) -> Option<Unit> {
        Some(match name.to_ascii_uppercase().trim_end_matches('S') {
            "MICROSECOND" => Unit::Microsecond,
            "SECOND" => Unit::Second,
            "MINUTE" => Unit::Minute,
            "HOUR" => Unit::Hour,
            "DAY" => Unit::Day,
            "WEEK" => Unit::Week,
            "MONTH" => Unit::Month,
            "QUARTER" => Unit::Quarter,
            "YEAR" => Unit::Year,
            _ => return None,
        })
    }

    /// Microseconds in one unit, for the units of fixed length.
    fn micros(self) -> Option<i64> {
        Some(match self {
            Unit::Microsecond => 1,
            Unit::Second => MICROS_PER_SECOND,
            Unit::Minute => 60 * MICROS_PER_SECOND,
            Unit::Hour => 3600 * MICROS_PER_SECOND,
            Unit::Day => MICROS_PER_DAY,
            Unit::Week => 7 * MICROS_PER_DAY,
            Unit::Month | Unit::Quarter | Unit::Year => return None,
        })
    }

    fn months(self) -> Option<i64> {
        match self {
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::Year => Some(12),
            _ => None,
        }
    }
}

/// `date + INTERVAL amount unit` as MySQL computes it: months and years keep the day, clamped to the last day of
/// the target month (`2024-01-31 + INTERVAL 1 MONTH` is `2024-02-29`); a date stays a date for units of a day or
/// more, and becomes a date and time otherwise. `amount` is in units, fractional only for seconds (MySQL rounds
/// other units to an integer). None when the result leaves years 0..=9999.
pub(crate) fn add_interval(date: DateTime, amount: f64, unit: Unit) -> Option<DateTime> {
    if !amount.is_finite() {
        return None;
    }
    if let Some(months) = unit.months() {
        let count = amount.round();
        if count.abs() > 120_000.0 {
            return None;
        }
        let total = date.year * 12 + i64::from(date.month) - 1 + count as i64 * months;
        let (year, month) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
        let day = date.day.min(days_in_month(year, month));
        let time = (date.hour, date.minute, date.second, date.micro);
        return DateTime::new(year, month, day, time, date.kind);
    }
    let per_unit = unit.micros().expect("every unit without months has a fixed length");
    let delta = if unit == Unit::Second { amount * 1e6 } else { amount.round() * per_unit as f64 };
    if delta.abs() > 4e17 {
        return None;
    }
    let kind = match unit {
        Unit::Day | Unit::Week => date.kind,
        _ => Kind::DateTime,
    };
    DateTime::from_epoch_micros(date.epoch_micros() + delta.round() as i64, kind)
}

/// TIMESTAMPDIFF(unit, from, to): whole units from `from` to `to`, truncated toward zero; months and years count
/// only completed months (the day and time of `to` must reach those of `from`).
pub(crate) fn difference(unit: Unit, from: DateTime, to: DateTime) -> i64 {
    if let Some(months) = unit.months() {
        return months_between(from, to) / months;
    }
    let per_unit = unit.micros().expect("every unit without months has a fixed length");
    (to.epoch_micros() - from.epoch_micros()) / per_unit
}

fn months_between(from: DateTime, to: DateTime) -> i64 {
    if to.epoch_micros() < from.epoch_micros() {
        return -months_between(to, from);
    }
    let mut months = (to.year * 12 + i64::from(to.month)) - (from.year * 12 + i64::from(from.month));
    if (to.day, to.time_micros()) < (from.day, from.time_micros()) {
        months -= 1;
    }
    months
}

/// The last day of the value's month, as a date.
pub(crate) fn last_day(date: DateTime) -> DateTime {
    DateTime {
        day: days_in_month(date.year, date.month),
        hour: 0,
        minute: 0,
        second: 0,
        micro: 0,
        kind: Kind::Date,
        ..date
    }
}

const WEEK_MONDAY_FIRST: u32 = 1;
const WEEK_YEAR: u32 = 2;
const WEEK_FIRST_WEEKDAY: u32 = 4;

/// MySQL's `week_mode`: the behaviour flags of WEEK(date, mode).
pub(crate) fn week_behaviour(mode: i64) -> u32 {
    let mut flags = (mode & 7) as u32;
    if flags & WEEK_MONDAY_FIRST == 0 {
        flags ^= WEEK_FIRST_WEEKDAY;
    }
    flags
}

/// MySQL's `calc_week`: (week number, the year it belongs to) under `behaviour` flags.
pub(crate) fn calc_week(date: DateTime, behaviour: u32) -> (u32, i64) {
    let days = date.days();
    let mut first_days = days_from_civil(date.year, 1, 1);
    let monday_first = behaviour & WEEK_MONDAY_FIRST != 0;
    let mut week_year = behaviour & WEEK_YEAR != 0;
    let first_weekday = behaviour & WEEK_FIRST_WEEKDAY != 0;
    // MySQL's calc_weekday: 0 is the first day of the week (Monday, or Sunday when Sunday comes first).
    let weekday_of = |d: i64| if monday_first { weekday_of_days(d) } else { (weekday_of_days(d) + 1) % 7 };
    let mut weekday = weekday_of(first_days);
    let mut year = date.year;
    let year_days = |y: i64| if is_leap(y) { 366 } else { 365 };
    if date.month == 1 && date.day <= 7 - weekday {
        if !week_year && ((first_weekday && weekday != 0) || (!first_weekday && weekday >= 4)) {
            return (0, year);
        }
        week_year = true;
        year -= 1;
        let previous = year_days(year);
        first_days -= previous;
        weekday = ((i64::from(weekday) + 53 * 7 - previous) % 7) as u32;
    }
    let day_count = if (first_weekday && weekday != 0) || (!first_weekday && weekday >= 4) {
        days - (first_days + (7 - i64::from(weekday)))
    } else {
        days - (first_days - i64::from(weekday))
    };
    if week_year && day_count >= 52 * 7 {
        let next_weekday = (i64::from(weekday) + year_days(year)) % 7;
        if (!first_weekday && next_weekday < 4) || (first_weekday && next_weekday == 0) {
            return (1, year + 1);
        }
    }
    ((day_count / 7 + 1) as u32, year)
}

/// DATE_FORMAT: MySQL's format specifiers over one value (a specifier MySQL does not define prints its letter).
pub(crate) fn format(date: DateTime, pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    let hour12 = if date.hour.is_multiple_of(12) { 12 } else { date.hour % 12 };
    let am_pm = if date.hour < 12 { "AM" } else { "PM" };
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else { break };
        let piece = match spec {
            'a' => DAY_NAMES[date.weekday() as usize][..3].to_string(),
            'b' => MONTH_NAMES[date.month as usize - 1][..3].to_string(),
            'c' => date.month.to_string(),
            'D' => format!("{}{}", date.day, ordinal_suffix(date.day)),
            'd' => format!("{:02}", date.day),
            'e' => date.day.to_string(),
            'f' => format!("{:06}", date.micro),
            'H' => format!("{:02}", date.hour),
            'h' | 'I' => format!("{hour12:02}"),
            'i' => format!("{:02}", date.minute),
            'j' => format!("{:03}", date.day_of_year()),
            'k' => date.hour.to_string(),
            'l' => hour12.to_string(),
            'M' => MONTH_NAMES[date.month as usize - 1].to_string(),
            'm' => format!("{:02}", date.month),
            'p' => am_pm.to_string(),
            'r' => format!("{hour12:02}:{:02}:{:02} {am_pm}", date.minute, date.second),
            'S' | 's' => format!("{:02}", date.second),
            'T' => format!("{:02}:{:02}:{:02}", date.hour, date.minute, date.second),
            'U' => format!("{:02}", calc_week(date, WEEK_FIRST_WEEKDAY).0),
            'u' => format!("{:02}", calc_week(date, WEEK_MONDAY_FIRST).0),
            'V' => format!("{:02}", calc_week(date, WEEK_YEAR | WEEK_FIRST_WEEKDAY).0),
            'v' => format!("{:02}", calc_week(date, WEEK_YEAR | WEEK_MONDAY_FIRST).0),
            'W' => DAY_NAMES[date.weekday() as usize].to_string(),
            'w' => ((date.weekday() + 1) % 7).to_string(),
            'X' => format!("{:04}", calc_week(date, WEEK_YEAR | WEEK_FIRST_WEEKDAY).1),
            'x' => format!("{:04}", calc_week(date, WEEK_YEAR | WEEK_MONDAY_FIRST).1),
            'Y' => format!("{:04}", date.year),
            'y' => format!("{:02}", date.year % 100),
            other => other.to_string(),
        };
        out.push_str(&piece);
    }
    out
}

fn ordinal_suffix(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

pub(crate) fn month_name(month: u32) -> &'static str {
    MONTH_NAMES[month as usize - 1]
}

pub(crate) fn day_name(weekday: u32) -> &'static str {
    DAY_NAMES[weekday as usize]
}

/// What STR_TO_DATE read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Date(DateTime),
    /// A time of day alone (the format had no date part), in microseconds.
    Time(i64),
}

impl Parsed {
    pub(crate) fn render(&self, fraction: bool) -> String {
        match self {
            Parsed::Date(d) if d.kind == Kind::DateTime && fraction => {
                format!("{:04}-{:02}-{:02} {}", d.year, d.month, d.day, render_time(d.time_micros(), true))
            }
            Parsed::Date(d) => d.render(),
            Parsed::Time(t) => render_time(*t, fraction),
        }
    }
}

#[derive(Default)]
struct Fields {
    year: Option<i64>,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: Option<u32>,
    minute: u32,
    second: u32,
    micro: u32,
    pm: Option<bool>,
    twelve_hour: bool,
    has_time: bool,
}

/// STR_TO_DATE: reads `text` with a DATE_FORMAT pattern. The result is a date when the pattern has only date
/// parts, a time when it has only time parts, a date and time otherwise; None (NULL) when the text does not match,
/// or the date is incomplete or impossible (MySQL's default strict mode refuses zero dates the same way). Text left
/// after the pattern is ignored, as MySQL does (with a warning).
pub(crate) fn parse_with_format(text: &str, pattern: &str) -> Option<Parsed> {
    let mut f = Fields::default();
    let mut input = text;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            input = input.trim_start();
            continue;
        }
        if c != '%' {
            input = input.trim_start_matches(char::is_whitespace);
            input = input.strip_prefix(c)?;
            continue;
        }
        let spec = chars.next()?;
        if spec != '%' {
            input = input.trim_start();
        }
        match spec {
            'Y' => {
                let (v, digits, rest) = number(input, 4)?;
                f.year = Some(if digits <= 2 { widen_year(v, digits) } else { v });
                input = rest;
            }
            'y' => {
                let (v, _, rest) = number(input, 2)?;
                f.year = Some(widen_year(v, 2));
                input = rest;
            }
            'm' | 'c' => (f.month, input) = small(input, 2)?,
            'd' | 'e' => (f.day, input) = small(input, 2)?,
            'D' => {
                (f.day, input) = small(input, 2)?;
                let suffix = input.get(..2).filter(|s| s.chars().all(|c| c.is_ascii_alphabetic()))?;
                input = &input[suffix.len()..];
            }
            'j' => (f.day_of_year, input) = small(input, 3)?,
            'H' | 'k' => {
                (f.hour, input) = small(input, 2)?;
                f.has_time = true;
            }
            'h' | 'I' | 'l' => {
                (f.hour, input) = small(input, 2)?;
                f.twelve_hour = true;
                f.has_time = true;
            }
            'i' => {
                let (m, rest) = small(input, 2)?;
                (f.minute, input) = (m?, rest);
                f.has_time = true;
            }
            'S' | 's' => {
                let (s, rest) = small(input, 2)?;
                (f.second, input) = (s?, rest);
                f.has_time = true;
            }
            'f' => {
                let end = input.find(|c: char| !c.is_ascii_digit()).unwrap_or(input.len()).min(6);
                if end == 0 {
                    return None;
                }
                f.micro = micro_of_fraction(&input[..end]);
                input = &input[end..];
                f.has_time = true;
            }
            'p' => {
                let word = input.get(..2)?;
                f.pm = Some(match word.to_ascii_uppercase().as_str() {
                    "AM" => false,
                    "PM" => true,
                    _ => return None,
                });
                input = &input[2..];
            }
            'M' | 'b' => {
                let (month, rest) = name_prefix(input, &MONTH_NAMES, spec == 'b')?;
                f.month = Some(month as u32 + 1);
                input = rest;
            }
            'W' | 'a' => input = name_prefix(input, &DAY_NAMES, spec == 'a')?.1,
            'T' => {
                input = clock(input, &mut f)?;
            }
            'r' => {
                input = clock(input, &mut f)?;
                f.twelve_hour = true;
                input = input.trim_start();
                let word = input.get(..2)?;
                f.pm = Some(word.eq_ignore_ascii_case("PM"));
                if !word.eq_ignore_ascii_case("AM") && !word.eq_ignore_ascii_case("PM") {
                    return None;
                }
                input = &input[2..];
            }
            other => input = input.strip_prefix(other)?,
        }
    }
    let mut hour = f.hour.unwrap_or(0);
    if f.twelve_hour || f.pm.is_some() {
        if !(1..=12).contains(&hour) && f.twelve_hour {
            return None;
        }
        hour %= 12;
        if f.pm == Some(true) {
            hour += 12;
        }
    }
    let has_date = f.year.is_some() || f.month.is_some() || f.day.is_some() || f.day_of_year.is_some();
    if !has_date {
        let micros = (i64::from(hour) * 3600 + i64::from(f.minute) * 60 + i64::from(f.second)) * MICROS_PER_SECOND
            + i64::from(f.micro);
        return (f.minute < 60 && f.second < 60).then_some(Parsed::Time(micros));
    }
    let year = f.year?;
    let (month, day) = match (f.month, f.day, f.day_of_year) {
        (Some(m), Some(d), _) => (m, d),
        (None, None, Some(n)) if n >= 1 && n <= if is_leap(year) { 366 } else { 365 } => {
            let (_, m, d) = civil_from_days(days_from_civil(year, 1, 1) + i64::from(n) - 1);
            (m, d)
        }
        _ => return None,
    };
    let kind = if f.has_time { Kind::DateTime } else { Kind::Date };
    DateTime::new(year, month, day, (hour, f.minute, f.second, f.micro), kind).map(Parsed::Date)
}

/// `HH:MM:SS` for `%T` and `%r`.
fn clock<'a>(input: &'a str, f: &mut Fields) -> Option<&'a str> {
    let (h, rest) = small(input, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (m, rest) = small(rest, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (s, rest) = small(rest, 2)?;
    f.hour = h;
    f.minute = m?;
    f.second = s?;
    f.has_time = true;
    Some(rest)
}

/// Up to `width` leading digits: (value, digits read, rest).
fn number(input: &str, width: usize) -> Option<(i64, usize, &str)> {
    let end = input.find(|c: char| !c.is_ascii_digit()).unwrap_or(input.len()).min(width);
    if end == 0 {
        return None;
    }
    Some((input[..end].parse().ok()?, end, &input[end..]))
}

fn small(input: &str, width: usize) -> Option<(Option<u32>, &str)> {
    let (v, _, rest) = number(input, width)?;
    Some((Some(u32::try_from(v).ok()?), rest))
}

/// The index of the name (or its three-letter abbreviation) `input` starts with, case-insensitively.
fn name_prefix<'a>(input: &'a str, names: &[&str], abbreviated: bool) -> Option<(usize, &'a str)> {
    for (i, name) in names.iter().enumerate() {
        let candidate = if abbreviated { &name[..3] } else { name };
        if input.len() >= candidate.len()
            && input.is_char_boundary(candidate.len())
            && input[..candidate.len()].eq_ignore_ascii_case(candidate)
        {
            return Some((i, &input[candidate.len()..]));
        }
    }
    // MySQL's %M also reads an abbreviation, and %b the full name.
    if !abbreviated {
        return name_prefix(input, names, true);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(text: &str) -> DateTime {
        parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn day_numbers_round_trip() {
        for days in [-719_528, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn reads_the_forms_mysql_reads() {
        let cases: &[(&str, Option<&str>)] = &[
            ("2024-01-15", Some("2024-01-15")),
            ("2024-01-15 10:11:12", Some("2024-01-15 10:11:12")),
            ("2024-01-15T10:11:12", Some("2024-01-15 10:11:12")),
            ("2024-01-15 10:11:12.5", Some("2024-01-15 10:11:12.500000")),
            ("2024/1/5", Some("2024-01-05")),
            ("24-01-15", Some("2024-01-15")),
            ("99-12-31", Some("1999-12-31")),
            ("20240115", Some("2024-01-15")),
            ("20240115101112", Some("2024-01-15 10:11:12")),
            ("2024-01-15 10:11", Some("2024-01-15 10:11:00")),
            ("2024-02-30", None),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("0000-00-00", None),
            ("hello", None),
            ("", None),
            ("2024-01-15 25:00:00", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).map(|d| d.render()).as_deref(), *expected, "{text}");
        }
        assert_eq!(from_number(20240115.0).map(|d| d.render()).as_deref(), Some("2024-01-15"));
        assert_eq!(from_number(20240115101112.0).map(|d| d.render()).as_deref(), Some("2024-01-15 10:11:12"));
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("10:05:03"), Some(36_303_000_000));
        assert_eq!(parse_time("838:59:59").map(|t| t / 3_600_000_000), Some(838));
        assert_eq!(parse_time("-01:00:00"), Some(-3_600_000_000));
        assert_eq!(parse_time("100503"), Some(36_303_000_000));
        assert_eq!(parse_time("10:61:00"), None);
    }

    /// Examples from the MySQL reference manual's DATE_FORMAT entry, plus one per specifier.
    #[test]
    fn date_format_matches_the_manual() {
        let cases = [
            ("2009-10-04 22:23:00", "%W %M %Y", "Sunday October 2009"),
            ("2007-10-04 22:23:00", "%H:%i:%s", "22:23:00"),
            ("1900-10-04 22:23:00", "%D %y %a %d %m %b %j", "4th 00 Thu 04 10 Oct 277"),
            ("1997-10-04 22:23:00", "%H %k %I %r %T %S %w", "22 22 10 10:23:00 PM 22:23:00 00 6"),
            ("1999-01-01", "%X %V", "1998 52"),
            ("2024-03-05 07:08:09.000123", "%c/%e %l:%i %p %f %%", "3/5 7:08 AM 000123 %"),
            ("2024-01-01", "%U %u %V %v %x %X", "00 01 53 01 2024 2023"),
            ("2024-12-31", "%j %U %u", "366 52 53"),
            ("2024-03-22", "%D %D", "22nd 22nd"),
            ("2024-03-11", "%D %q", "11th q"),
        ];
        for (date, pattern, expected) in cases {
            assert_eq!(format(dt(date), pattern), expected, "DATE_FORMAT('{date}', '{pattern}')");
        }
    }

    /// WEEK(date, mode) examples from the manual.
    #[test]
    fn weeks_match_the_manual() {
        let week = |d: &str, mode: i64| calc_week(dt(d), week_behaviour(mode));
        assert_eq!(week("2008-02-20", 0).0, 7);
        assert_eq!(week("2008-02-20", 1).0, 8);
        assert_eq!(week("2008-12-31", 1).0, 53);
        assert_eq!(week("2000-01-01", 0).0, 0);
        assert_eq!(week("2000-01-01", 2), (52, 1999));
        assert_eq!(week("2008-12-29", 3), (1, 2009));
    }

    #[test]
    fn interval_arithmetic_clamps_month_ends() {
        let add = |d: &str, n: f64, unit: &str| {
            add_interval(dt(d), n, Unit::parse(unit).unwrap()).map(|d| d.render()).unwrap_or_else(|| "NULL".into())
        };
        assert_eq!(add("2018-05-01", 1.0, "DAY"), "2018-05-02");
        assert_eq!(add("2020-12-31 23:59:59", 1.0, "SECOND"), "2021-01-01 00:00:00");
        assert_eq!(add("2018-12-31 23:59:59", 1.0, "DAY"), "2019-01-01 23:59:59");
        assert_eq!(add("2024-01-31", 1.0, "MONTH"), "2024-02-29");
        assert_eq!(add("2023-01-31", 1.0, "MONTH"), "2023-02-28");
        assert_eq!(add("2024-02-29", 1.0, "YEAR"), "2025-02-28");
        assert_eq!(add("2024-02-29", -1.0, "QUARTER"), "2023-11-29");
        assert_eq!(add("2018-05-01", 1.0, "HOUR"), "2018-05-01 01:00:00");
        assert_eq!(add("1992-12-31 23:59:59.000002", 1.0, "MICROSECOND"), "1992-12-31 23:59:59.000003");
        assert_eq!(add("2024-01-01", 1.5, "SECOND"), "2024-01-01 00:00:01.500000");
        assert_eq!(add("2024-01-01", 2.0, "WEEK"), "2024-01-15");
        assert_eq!(add("2100-12-31", -1.0, "DAY"), "2100-12-30");
        assert_eq!(add("9999-12-31", 1.0, "DAY"), "NULL");
        assert_eq!(add("0000-01-01", -1.0, "DAY"), "NULL");
    }

    #[test]
    fn differences_count_whole_units() {
        let diff = |unit: &str, a: &str, b: &str| difference(Unit::parse(unit).unwrap(), dt(a), dt(b));
        // The manual's TIMESTAMPDIFF examples.
        assert_eq!(diff("MONTH", "2003-02-01", "2003-05-01"), 3);
        assert_eq!(diff("YEAR", "2002-05-01", "2001-01-01"), -1);
        assert_eq!(diff("MINUTE", "2003-02-01", "2003-05-01 12:05:55"), 128_885);
        assert_eq!(diff("MONTH", "2024-01-31", "2024-02-29"), 0);
        assert_eq!(diff("DAY", "2024-01-01 12:00:00", "2024-01-02 11:59:59"), 0);
        assert_eq!(diff("SECOND", "2024-01-01 00:00:01", "2024-01-01 00:00:00"), -1);
    }

    #[test]
    fn str_to_date_matches_the_manual() {
        let read = |t: &str, p: &str| parse_with_format(t, p).map(|v| v.render(p.contains("%f")));
        assert_eq!(read("01,5,2013", "%d,%m,%Y").as_deref(), Some("2013-05-01"));
        assert_eq!(read("May 1, 2013", "%M %d,%Y").as_deref(), Some("2013-05-01"));
        assert_eq!(read("a09:30:17", "a%h:%i:%s").as_deref(), Some("09:30:17"));
        assert_eq!(read("a09:30:17", "%h:%i:%s"), None);
        assert_eq!(read("09:30:17a", "%h:%i:%s").as_deref(), Some("09:30:17"));
        assert_eq!(read("9", "%m"), None);
        assert_eq!(read("2013-05-01 10:11:12", "%Y-%m-%d %H:%i:%s").as_deref(), Some("2013-05-01 10:11:12"));
        assert_eq!(
            read("Friday, 3rd January 2025 2:05 PM", "%W, %D %M %Y %l:%i %p").as_deref(),
            Some("2025-01-03 14:05:00")
        );
        assert_eq!(read("12:00:00 AM 1/2/99", "%r %c/%e/%y").as_deref(), Some("1999-01-02 00:00:00"));
        assert_eq!(read("2024-060", "%Y-%j").as_deref(), Some("2024-02-29"));
        assert_eq!(read("2024-02-30", "%Y-%m-%d"), None);
        assert_eq!(read("10.25", "%s.%f").as_deref(), Some("00:00:10.250000"));
    }
}
