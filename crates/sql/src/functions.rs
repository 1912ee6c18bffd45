//! MySQL's functions and operators on any SQLite connection Canopy opens: leaf partitions and reference copies,
//! the aggregator's merge, gather and scratch engines, and the differential tests' oracle, so a query means the same
//! wherever it runs. [`register`] installs them; the planner (`plan::mysql`) rewrites the syntax SQLite lacks
//! (`DIV`, `%`, `INTERVAL`, `TIMESTAMPDIFF(unit, ...)`, ...) into calls of these functions and puts the statement's
//! time in place of `NOW()` and its kin before any SQL leaves the aggregator.
//!
//! Values follow Canopy's storage: dates and times are ISO-8601 text in UTC (`YYYY-MM-DD HH:MM:SS`), numbers are
//! SQLite's INTEGER or REAL. Arguments are read as MySQL reads them (a number where a date is expected is
//! `YYYYMMDD[HHMMSS]`, text where a number is expected is its numeric prefix); an argument that cannot be read is
//! NULL, as MySQL answers (with a warning). This module reads no clock and draws no randomness itself: the
//! [`Host`] given to [`register`] does, so the pure crate stays pure and tests can fix time.

mod datetime;
mod text;

use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};

use crate::value::Value;
use datetime::{DateTime, Kind, Unit};

/// What the functions that read the clock, draw random numbers or wait need from the process.
pub trait Host: Send + Sync {
    /// Microseconds since 1970-01-01 00:00:00 UTC, now.
    fn now_micros(&self) -> i64;
    /// 64 random bits.
    fn random(&self) -> u64;
    /// Waits `seconds`; true when the wait was cut short because the statement's time limit passed.
    fn sleep(&self, seconds: f64) -> bool;
}

/// A host for tests and the differential oracle: a fixed clock, random bits from a seeded sequence (splitmix64),
/// and waits that return at once.
#[derive(Debug)]
pub struct SeededHost {
    now_micros: i64,
    state: std::sync::atomic::AtomicU64,
}

impl SeededHost {
    pub fn shared(now_micros: i64, seed: u64) -> Arc<dyn Host> {
        Arc::new(SeededHost { now_micros, state: std::sync::atomic::AtomicU64::new(seed) })
    }
}

impl Host for SeededHost {
    fn now_micros(&self) -> i64 {
        self.now_micros
    }
    fn random(&self) -> u64 {
        let mut z = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn sleep(&self, _seconds: f64) -> bool {
        false
    }
}

/// Names of the scalar functions [`register`] installs (lower case): the planner treats them as per-row functions,
/// never as aggregates, so queries using them still scatter.
pub const SCALAR_FUNCTIONS: &[&str] = &[
    "adddate",
    "ascii",
    "canopy_div",
    "char_length",
    "character_length",
    "concat",
    "curdate",
    "curtime",
    "date_add",
    "date_format",
    "date_sub",
    "datediff",
    "day",
    "dayname",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "extract",
    "find_in_set",
    "format",
    "from_unixtime",
    "hour",
    "last_day",
    "lcase",
    "left",
    "localtime",
    "localtimestamp",
    "locate",
    "lower",
    "lpad",
    "microsecond",
    "minute",
    "mod",
    "month",
    "monthname",
    "now",
    "quarter",
    "rand",
    "repeat",
    "reverse",
    "right",
    "rpad",
    "second",
    "sleep",
    "space",
    "str_to_date",
    "strcmp",
    "subdate",
    "substring_index",
    "sysdate",
    "timestampdiff",
    "to_days",
    "ucase",
    "unix_timestamp",
    "upper",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "uuid",
    "week",
    "weekday",
    "weekofyear",
    "year",
];

/// Installs MySQL's functions on `conn` (see the module doc). Call it on every connection right after opening.
pub fn register(conn: &Connection, host: Arc<dyn Host>) -> rusqlite::Result<()> {
    let pure = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let volatile = FunctionFlags::SQLITE_UTF8;
    let scalar = |name: &str, args: i32, f: fn(&Context<'_>) -> rusqlite::Result<Value>| {
        conn.create_scalar_function(name, args, pure, f)
    };

    // Dates and times.
    scalar("date_format", 2, |c| Ok(date_and(c, 0, |d| Value::Text(datetime::format(d, &text_or_empty(c, 1))))))?;
    scalar("str_to_date", 2, str_to_date)?;
    scalar("from_unixtime", 1, |c| Ok(from_unixtime(c, None)))?;
    scalar("from_unixtime", 2, |c| Ok(from_unixtime(c, text(c, 1).as_deref())))?;
    scalar("unix_timestamp", 1, |c| Ok(date_and(c, 0, unix_timestamp)))?;
    scalar("datediff", 2, |c| Ok(two_dates(c, |a, b| Value::Integer(a.days() - b.days()))))?;
    scalar("timestampdiff", 3, timestampdiff)?;
    scalar("date_add", 3, |c| Ok(shift(c, 1.0)))?;
    scalar("date_sub", 3, |c| Ok(shift(c, -1.0)))?;
    scalar("adddate", 2, |c| Ok(shift_days(c, 1.0)))?;
    scalar("subdate", 2, |c| Ok(shift_days(c, -1.0)))?;
    scalar("year", 1, |c| Ok(date_and(c, 0, |d| Value::Integer(d.year))))?;
    scalar("month", 1, |c| Ok(date_and(c, 0, |d| Value::int(d.month))))?;
    scalar("quarter", 1, |c| Ok(date_and(c, 0, |d| Value::int(d.month.div_ceil(3)))))?;
    for name in ["day", "dayofmonth"] {
        scalar(name, 1, |c| Ok(date_and(c, 0, |d| Value::int(d.day))))?;
    }
    scalar("dayofweek", 1, |c| Ok(date_and(c, 0, |d| Value::int((d.weekday() + 1) % 7 + 1))))?;
    scalar("weekday", 1, |c| Ok(date_and(c, 0, |d| Value::int(d.weekday()))))?;
    scalar("dayofyear", 1, |c| Ok(date_and(c, 0, |d| Value::int(d.day_of_year()))))?;
    scalar("monthname", 1, |c| Ok(date_and(c, 0, |d| Value::text(datetime::month_name(d.month)))))?;
    scalar("dayname", 1, |c| Ok(date_and(c, 0, |d| Value::text(datetime::day_name(d.weekday())))))?;
    scalar("to_days", 1, |c| Ok(date_and(c, 0, |d| Value::Integer(d.to_days()))))?;
    scalar("last_day", 1, |c| Ok(date_and(c, 0, |d| Value::Text(datetime::last_day(d).render()))))?;
    scalar("week", 1, |c| Ok(week(c, 0)))?;
    scalar("week", 2, |c| Ok(integer(c, 1).map_or(Value::Null, |mode| week(c, mode))))?;
    scalar("weekofyear", 1, |c| Ok(week(c, 3)))?;
    scalar("hour", 1, |c| Ok(clock_part(c, |t| t / 3_600_000_000)))?;
    scalar("minute", 1, |c| Ok(clock_part(c, |t| t / 60_000_000 % 60)))?;
    scalar("second", 1, |c| Ok(clock_part(c, |t| t / 1_000_000 % 60)))?;
    scalar("microsecond", 1, |c| Ok(clock_part(c, |t| t % 1_000_000)))?;
    scalar("extract", 2, extract)?;

    // Strings.
    scalar("lpad", 3, |c| Ok(pad(c, true)))?;
    scalar("rpad", 3, |c| Ok(pad(c, false)))?;
    scalar("locate", 2, |c| Ok(locate(c, 1)))?;
    scalar("locate", 3, |c| Ok(integer(c, 2).map_or(Value::Null, |start| locate(c, start))))?;
    scalar("find_in_set", 2, |c| {
        Ok(match (text(c, 0), text(c, 1)) {
            (Some(needle), Some(list)) => Value::Integer(text::find_in_set(&needle, &list)),
            _ => Value::Null,
        })
    })?;
    scalar("format", 2, |c| Ok(format_number(c)))?;
    scalar("format", 3, |c| Ok(format_number(c)))?;
    scalar("substring_index", 3, |c| {
        Ok(match (text(c, 0), text(c, 1), integer(c, 2)) {
            (Some(s), Some(delim), Some(count)) => Value::Text(text::substring_index(&s, &delim, count)),
            _ => Value::Null,
        })
    })?;
    scalar("left", 2, |c| Ok(text_and_count(c, text::left)))?;
    scalar("right", 2, |c| Ok(text_and_count(c, text::right)))?;
    scalar("reverse", 1, |c| {
        Ok(match c.get_raw(0) {
            ValueRef::Blob(b) => Value::Blob(b.iter().rev().copied().collect()),
            _ => text(c, 0).map_or(Value::Null, |s| Value::Text(s.chars().rev().collect())),
        })
    })?;
    scalar("space", 1, |c| Ok(integer(c, 0).and_then(|n| text::repeat(" ", n)).map_or(Value::Null, Value::Text)))?;
    scalar("repeat", 2, |c| {
        Ok(match (text(c, 0), integer(c, 1)) {
            (Some(s), Some(n)) => text::repeat(&s, n).map_or(Value::Null, Value::Text),
            _ => Value::Null,
        })
    })?;
    for name in ["char_length", "character_length"] {
        scalar(name, 1, |c| {
            Ok(match c.get_raw(0) {
                ValueRef::Blob(b) => Value::Integer(b.len() as i64),
                _ => text(c, 0).map_or(Value::Null, |s| Value::Integer(s.chars().count() as i64)),
            })
        })?;
    }
    conn.create_scalar_function("concat", -1, pure, concat)?;
    for name in ["upper", "ucase"] {
        scalar(name, 1, |c| Ok(text(c, 0).map_or(Value::Null, |s| Value::Text(s.to_uppercase()))))?;
    }
    for name in ["lower", "lcase"] {
        scalar(name, 1, |c| Ok(text(c, 0).map_or(Value::Null, |s| Value::Text(s.to_lowercase()))))?;
    }
    scalar("strcmp", 2, |c| {
        Ok(match (bytes(c, 0), bytes(c, 1)) {
            (Some(a), Some(b)) => Value::Integer(a.cmp(&b) as i64),
            _ => Value::Null,
        })
    })?;
    scalar("ascii", 1, |c| Ok(bytes(c, 0).map_or(Value::Null, |b| Value::int(b.first().copied().unwrap_or(0)))))?;

    // Operators SQLite lacks (the planner writes `a DIV b` and `a % b` as these calls).
    scalar("canopy_div", 2, integer_divide)?;
    scalar("mod", 2, modulo)?;

    // The clock, randomness and waiting, through the host. Never deterministic: SQLite must call them each time.
    let now = |host: &Arc<dyn Host>, c: &Context<'_>, kind: Clock| -> Value {
        let fsp = if c.is_empty() { Some(0) } else { integer(c, 0) };
        fsp.filter(|p| (0..=6).contains(p)).map_or(Value::Null, |p| clock_value(host.now_micros(), kind, p as u32))
    };
    for (name, kind) in [
        ("now", Clock::DateTime),
        ("sysdate", Clock::DateTime),
        ("localtime", Clock::DateTime),
        ("localtimestamp", Clock::DateTime),
        ("utc_timestamp", Clock::DateTime),
        ("curtime", Clock::Time),
        ("utc_time", Clock::Time),
    ] {
        for args in [0, 1] {
            let host = host.clone();
            conn.create_scalar_function(name, args, volatile, move |c| Ok(now(&host, c, kind)))?;
        }
    }
    for name in ["curdate", "utc_date"] {
        let host = host.clone();
        conn.create_scalar_function(name, 0, volatile, move |_| Ok(clock_value(host.now_micros(), Clock::Date, 0)))?;
    }
    let clock = host.clone();
    conn.create_scalar_function("unix_timestamp", 0, volatile, move |_| {
        Ok(Value::Integer(clock.now_micros().div_euclid(datetime::MICROS_PER_SECOND)))
    })?;
    let random = host.clone();
    conn.create_scalar_function("rand", 0, volatile, move |_| Ok(Value::Real(unit_real(random.random()))))?;
    conn.create_scalar_function("rand", 1, volatile, seeded_rand)?;
    let source = host.clone();
    conn.create_scalar_function("uuid", 0, volatile, move |_| {
        Ok(Value::Text(uuid_v1(source.now_micros(), source.random(), source.random())))
    })?;
    let waiter = host;
    conn.create_scalar_function("sleep", 1, volatile, move |c| {
        Ok(match real(c, 0) {
            Some(seconds) if seconds > 0.0 => Value::Integer(i64::from(waiter.sleep(seconds))),
            _ => Value::Integer(0),
        })
    })?;
    Ok(())
}

/// What a clock function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `YYYY-MM-DD HH:MM:SS[.f]` (NOW, UTC_TIMESTAMP, ...).
    DateTime,
    /// `YYYY-MM-DD` (CURDATE).
    Date,
    /// `HH:MM:SS[.f]` (CURTIME).
    Time,
}

/// The value a clock function shows at `micros` (since the epoch, UTC) with `fsp` fractional digits (0..=6): what
/// the planner writes for NOW() and its kin, and what the registered functions return.
pub fn clock_value(micros: i64, kind: Clock, fsp: u32) -> Value {
    let Some(at) = DateTime::from_epoch_micros(micros, Kind::DateTime) else { return Value::Null };
    let fraction = |text: String| -> String {
        if fsp == 0 {
            return text;
        }
        let digits = format!("{:06}", at.micro);
        format!("{text}.{}", &digits[..fsp.min(6) as usize])
    };
    Value::Text(match kind {
        Clock::Date => DateTime { kind: Kind::Date, ..at }.render(),
        Clock::DateTime => fraction(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year, at.month, at.day, at.hour, at.minute, at.second
        )),
        Clock::Time => fraction(format!("{:02}:{:02}:{:02}", at.hour, at.minute, at.second)),
    })
}

// ---- reading arguments as MySQL does ----

/// An argument as text: numbers in their usual decimal form, NULL as None.
fn text(c: &Context<'_>, i: usize) -> Option<String> {
    match c.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(r) => Some(real_text(r)),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn text_or_empty(c: &Context<'_>, i: usize) -> String {
    text(c, i).unwrap_or_default()
}

fn bytes(c: &Context<'_>, i: usize) -> Option<Vec<u8>> {
    match c.get_raw(i) {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        _ => text(c, i).map(String::into_bytes),
    }
}

/// A real as text: the shortest form that reads back as the same number (`2.5`, `3`).
fn real_text(r: f64) -> String {
    format!("{r}")
}

/// A number read from an argument.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Integer(i64),
    Real(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Real(r) => r,
        }
    }
}

/// An argument as a number; text counts by its numeric prefix (`'12abc'` is 12, `'abc'` is 0), as in MySQL.
fn number(c: &Context<'_>, i: usize) -> Option<Number> {
    match c.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(Number::Integer(n)),
        ValueRef::Real(r) => Some(Number::Real(r)),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(numeric_prefix(&String::from_utf8_lossy(t))),
    }
}

fn numeric_prefix(text: &str) -> Number {
    let t = text.trim_start();
    let bytes = t.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let digits_start = end;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let mut integral = true;
    if bytes.get(end) == Some(&b'.') {
        integral = false;
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    if end > digits_start && matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exp = end + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        if bytes.get(exp).is_some_and(u8::is_ascii_digit) {
            integral = false;
            end = exp;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
    }
    let prefix = &t[..end];
    if integral && let Ok(i) = prefix.parse::<i64>() {
        return Number::Integer(i);
    }
    Number::Real(prefix.parse::<f64>().unwrap_or(0.0))
}

fn real(c: &Context<'_>, i: usize) -> Option<f64> {
    number(c, i).map(Number::as_f64)
}

/// An argument as an integer: reals round half away from zero, as MySQL does for integer arguments.
fn integer(c: &Context<'_>, i: usize) -> Option<i64> {
    match number(c, i)? {
        Number::Integer(n) => Some(n),
        Number::Real(r) if r.is_finite() => Some(r.round() as i64),
        Number::Real(_) => None,
    }
}

/// An argument as a date or date and time (NULL when it holds none).
fn date(c: &Context<'_>, i: usize) -> Option<DateTime> {
    match c.get_raw(i) {
        ValueRef::Text(t) | ValueRef::Blob(t) => datetime::parse(&String::from_utf8_lossy(t)),
        ValueRef::Integer(n) => datetime::from_number(n as f64),
        ValueRef::Real(r) => datetime::from_number(r),
        ValueRef::Null => None,
    }
}

fn date_and(c: &Context<'_>, i: usize, f: impl FnOnce(DateTime) -> Value) -> Value {
    date(c, i).map_or(Value::Null, f)
}

fn two_dates(c: &Context<'_>, f: impl FnOnce(DateTime, DateTime) -> Value) -> Value {
    match (date(c, 0), date(c, 1)) {
        (Some(a), Some(b)) => f(a, b),
        _ => Value::Null,
    }
}

// ---- dates and times ----

fn str_to_date(c: &Context<'_>) -> rusqlite::Result<Value> {
    Ok(match (text(c, 0), text(c, 1)) {
        (Some(s), Some(pattern)) => datetime::parse_with_format(&s, &pattern)
            .map_or(Value::Null, |parsed| Value::Text(parsed.render(pattern.contains("%f")))),
        _ => Value::Null,
    })
}

/// FROM_UNIXTIME(seconds[, format]): the UTC date and time, with microseconds when the seconds have a fraction.
fn from_unixtime(c: &Context<'_>, pattern: Option<&str>) -> Value {
    let micros = match number(c, 0) {
        Some(Number::Integer(s)) if s >= 0 => s.checked_mul(datetime::MICROS_PER_SECOND),
        Some(Number::Real(s)) if (0.0..3.3e11).contains(&s) => Some((s * 1e6).round() as i64),
        _ => None,
    };
    let Some(at) = micros.and_then(|m| DateTime::from_epoch_micros(m, Kind::DateTime)) else { return Value::Null };
    match (pattern, c.len()) {
        (Some(p), _) => Value::Text(datetime::format(at, p)),
        (None, 2) => Value::Null,
        (None, _) => Value::Text(at.render()),
    }
}

/// UNIX_TIMESTAMP(date): seconds since the epoch (UTC), a real when the value has microseconds; 0 before 1970.
fn unix_timestamp(d: DateTime) -> Value {
    let micros = d.epoch_micros();
    if micros < 0 {
        return Value::Integer(0);
    }
    if d.micro == 0 { Value::Integer(micros / datetime::MICROS_PER_SECOND) } else { Value::Real(micros as f64 / 1e6) }
}

fn unit(c: &Context<'_>, i: usize) -> Option<Unit> {
    Unit::parse(&text(c, i)?)
}

fn timestampdiff(c: &Context<'_>) -> rusqlite::Result<Value> {
    Ok(match (unit(c, 0), date(c, 1), date(c, 2)) {
        (Some(u), Some(from), Some(to)) => Value::Integer(datetime::difference(u, from, to)),
        _ => Value::Null,
    })
}

/// DATE_ADD(date, amount, unit) (`sign` 1) and DATE_SUB (`sign` -1), the planner's form of `INTERVAL` arithmetic.
fn shift(c: &Context<'_>, sign: f64) -> Value {
    match (date(c, 0), real(c, 1), unit(c, 2)) {
        (Some(d), Some(amount), Some(u)) => {
            datetime::add_interval(d, sign * amount, u).map_or(Value::Null, |d| Value::Text(d.render()))
        }
        _ => Value::Null,
    }
}

/// ADDDATE(date, days) and SUBDATE(date, days).
fn shift_days(c: &Context<'_>, sign: f64) -> Value {
    match (date(c, 0), real(c, 1)) {
        (Some(d), Some(days)) => {
            datetime::add_interval(d, sign * days, Unit::Day).map_or(Value::Null, |d| Value::Text(d.render()))
        }
        _ => Value::Null,
    }
}

fn week(c: &Context<'_>, mode: i64) -> Value {
    date_and(c, 0, |d| Value::int(datetime::calc_week(d, datetime::week_behaviour(mode)).0))
}

/// HOUR, MINUTE, SECOND, MICROSECOND of a date and time or of a TIME value (`'10:05:03'`, hours past 23 allowed).
fn clock_part(c: &Context<'_>, part: fn(i64) -> i64) -> Value {
    let micros = match c.get_raw(0) {
        ValueRef::Null => return Value::Null,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let t = String::from_utf8_lossy(t);
            // `10:05:03` is a time (MySQL reads a TIME here first), `2008-02-03 10:05:03` a date and time.
            let time_first = t
                .trim()
                .split(':')
                .next()
                .is_some_and(|h| h.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()));
            if time_first {
                datetime::parse_time(&t).or_else(|| datetime::parse(&t).map(|d| d.time_micros()))
            } else {
                datetime::parse(&t).map(|d| d.time_micros()).or_else(|| datetime::parse_time(&t))
            }
        }
        _ => date(c, 0).map(|d| d.time_micros()),
    };
    micros.map_or(Value::Null, |m| Value::Integer(part(m.abs())))
}

/// EXTRACT(unit FROM date), written `extract('UNIT', date)` by the planner.
fn extract(c: &Context<'_>) -> rusqlite::Result<Value> {
    let Some(u) = unit(c, 0) else { return Ok(Value::Null) };
    let Some(d) = date(c, 1) else { return Ok(Value::Null) };
    Ok(Value::Integer(match u {
        Unit::Year => d.year,
        Unit::Quarter => i64::from(d.month.div_ceil(3)),
        Unit::Month => i64::from(d.month),
        Unit::Week => i64::from(datetime::calc_week(d, datetime::week_behaviour(0)).0),
        Unit::Day => i64::from(d.day),
        Unit::Hour => i64::from(d.hour),
        Unit::Minute => i64::from(d.minute),
        Unit::Second => i64::from(d.second),
        Unit::Microsecond => i64::from(d.micro),
    }))
}

// ---- strings ----

fn pad(c: &Context<'_>, left: bool) -> Value {
    match (text(c, 0), integer(c, 1), text(c, 2)) {
        (Some(s), Some(len), Some(p)) => text::pad(&s, len, &p, left).map_or(Value::Null, Value::Text),
        _ => Value::Null,
    }
}

fn locate(c: &Context<'_>, start: i64) -> Value {
    match (text(c, 0), text(c, 1)) {
        (Some(needle), Some(haystack)) => Value::Integer(text::locate(&needle, &haystack, start)),
        _ => Value::Null,
    }
}

fn text_and_count(c: &Context<'_>, f: fn(&str, i64) -> String) -> Value {
    match (text(c, 0), integer(c, 1)) {
        (Some(s), Some(n)) => Value::Text(f(&s, n)),
        _ => Value::Null,
    }
}

/// FORMAT(number, decimals[, locale]); the locale is ignored (always `en_US`).
fn format_number(c: &Context<'_>) -> Value {
    let digits = match number(c, 0) {
        None => return Value::Null,
        Some(Number::Integer(i)) => i.to_string(),
        // Text keeps its own digits so that rounding is decimal, as MySQL does for a DECIMAL.
        Some(Number::Real(r)) => match c.get_raw(0) {
            ValueRef::Text(t) => {
                let t = String::from_utf8_lossy(t).trim().to_string();
                if datetime_free_number(&t) { t } else { real_text(r) }
            }
            _ => real_text(r),
        },
    };
    let Some(decimals) = integer(c, 1) else { return Value::Null };
    text::format_number(&digits, decimals).map_or(Value::Null, Value::Text)
}

/// Whether text is one plain decimal number (so its own digits can be rounded).
fn datetime_free_number(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// CONCAT: NULL when any argument is NULL, a blob when any argument is one, text otherwise.
fn concat(c: &Context<'_>) -> rusqlite::Result<Value> {
    let mut out: Vec<u8> = Vec::new();
    let mut binary = false;
    for i in 0..c.len() {
        match c.get_raw(i) {
            ValueRef::Null => return Ok(Value::Null),
            ValueRef::Blob(b) => {
                binary = true;
                out.extend_from_slice(b);
            }
            _ => out.extend_from_slice(text(c, i).unwrap_or_default().as_bytes()),
        }
        if out.len() > text::STRING_BYTES_MAX {
            return Ok(Value::Null);
        }
    }
    Ok(if binary {
        Value::Blob(out)
    } else {
        Value::Text(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    })
}

// ---- operators ----

/// `a DIV b`: integer division truncated toward zero, NULL for a zero divisor; reals divide first, then truncate.
fn integer_divide(c: &Context<'_>) -> rusqlite::Result<Value> {
    let out_of_range = || Error::UserFunctionError("BIGINT value is out of range in 'DIV'".into());
    Ok(match (number(c, 0), number(c, 1)) {
        (None, _) | (_, None) => Value::Null,
        (Some(_), Some(b)) if b.as_f64() == 0.0 => Value::Null,
        (Some(Number::Integer(a)), Some(Number::Integer(b))) => {
            Value::Integer(a.checked_div(b).ok_or_else(out_of_range)?)
        }
        (Some(a), Some(b)) => {
            let q = (a.as_f64() / b.as_f64()).trunc();
            if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&q) {
                return Err(out_of_range());
            }
            Value::Integer(q as i64)
        }
    })
}

/// `a % b` and MOD(a, b): the remainder with the dividend's sign, NULL for a zero divisor; reals keep their fraction
/// (`5.5 % 2` is 1.5, where SQLite's `%` would give 1).
fn modulo(c: &Context<'_>) -> rusqlite::Result<Value> {
    Ok(match (number(c, 0), number(c, 1)) {
        (None, _) | (_, None) => Value::Null,
        (Some(_), Some(b)) if b.as_f64() == 0.0 => Value::Null,
        (Some(Number::Integer(a)), Some(Number::Integer(b))) => Value::Integer(a.checked_rem(b).unwrap_or(0)),
        (Some(a), Some(b)) => Value::Real(a.as_f64() % b.as_f64()),
    })
}

// ---- randomness ----

/// 53 random bits as a real in [0, 1).
fn unit_real(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// MySQL's `my_rnd` generator, so RAND(n) gives MySQL's sequence for seed n.
#[derive(Debug)]
struct MysqlRand {
    seed1: u64,
    seed2: u64,
}

const RAND_MAX_VALUE: u64 = 0x3FFF_FFFF;

impl MysqlRand {
    fn seeded(seed: i64) -> MysqlRand {
        let n = seed as u32;
        let seed1 = u64::from(n.wrapping_mul(0x10001).wrapping_add(55_555_555));
        let seed2 = u64::from(n.wrapping_mul(0x1000_0001));
        MysqlRand { seed1: seed1 % RAND_MAX_VALUE, seed2: seed2 % RAND_MAX_VALUE }
    }

    fn next(&mut self) -> f64 {
        self.seed1 = (self.seed1 * 3 + self.seed2) % RAND_MAX_VALUE;
        self.seed2 = (self.seed1 + self.seed2 + 33) % RAND_MAX_VALUE;
        self.seed1 as f64 / RAND_MAX_VALUE as f64
    }
}

/// RAND(seed): a constant seed starts one sequence per statement (SQLite keeps the generator with the constant
/// argument); a seed that changes per row (a column) restarts it on every call, as in MySQL.
fn seeded_rand(c: &Context<'_>) -> rusqlite::Result<Value> {
    let seed = integer(c, 0).unwrap_or(0);
    let generator = c.get_or_create_aux(0, |_| Ok::<_, Error>(Mutex::new(MysqlRand::seeded(seed))))?;
    let mut generator = generator.lock().map_err(|_| Error::UserFunctionError("RAND state poisoned".into()))?;
    Ok(Value::Real(generator.next()))
}

/// A version-1 UUID as MySQL's UUID() writes it: the time in 100 ns steps since 1582-10-15, then a random clock
/// sequence and a random node id (with the multicast bit set, as RFC 4122 asks of ids that are not a MAC address).
fn uuid_v1(now_micros: i64, random_a: u64, random_b: u64) -> String {
    const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;
    let ticks = (now_micros.max(0) as u64).wrapping_mul(10).wrapping_add(GREGORIAN_OFFSET) + random_b % 10;
    let time_low = ticks & 0xFFFF_FFFF;
    let time_mid = (ticks >> 32) & 0xFFFF;
    let time_high = ((ticks >> 48) & 0x0FFF) | 0x1000;
    let clock_seq = (random_a & 0x3FFF) | 0x8000;
    let node = (random_a >> 16) & 0xFFFF_FFFF_FFFF | 0x0100_0000_0000;
    format!("{time_low:08x}-{time_mid:04x}-{time_high:04x}-{clock_seq:04x}-{node:012x}")
}

#[cfg(test)]
mod tests;
