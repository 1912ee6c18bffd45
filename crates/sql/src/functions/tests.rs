//! Every registered function through SQL on an in-memory SQLite, against the outputs the MySQL reference manual
//! documents (one row per example), with a fixed clock and a counting random source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// 2024-03-05 14:07:09.123456 UTC.
const NOW_MICROS: i64 = 1_709_647_629_123_456;

struct FixedHost {
    draws: AtomicU64,
}

impl Host for FixedHost {
    fn now_micros(&self) -> i64 {
        NOW_MICROS
    }
    fn random(&self) -> u64 {
        self.draws.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn sleep(&self, seconds: f64) -> bool {
        seconds > 100.0
    }
}

fn conn() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    register(&conn, Arc::new(FixedHost { draws: AtomicU64::new(1) })).unwrap();
    conn
}

fn eval(conn: &Connection, expr: &str) -> Value {
    let v: rusqlite::types::Value =
        conn.query_row(&format!("SELECT {expr}"), [], |r| r.get(0)).unwrap_or_else(|e| panic!("{expr}: {e}"));
    Value::from(v)
}

fn t(s: &str) -> Value {
    Value::text(s)
}

fn check(cases: &[(&str, Value)]) {
    let conn = conn();
    for (expr, expected) in cases {
        assert_eq!(&eval(&conn, expr), expected, "SELECT {expr}");
    }
}

#[test]
fn date_and_time_functions() {
    use Value::{Integer as I, Null};
    check(&[
        ("date_format('2009-10-04 22:23:00', '%W %M %Y')", t("Sunday October 2009")),
        ("date_format('2006-06-01', '%d')", t("01")),
        ("date_format(20240115, '%Y/%m/%d')", t("2024/01/15")),
        ("date_format(NULL, '%Y')", Null),
        ("date_format('nonsense', '%Y')", Null),
        ("str_to_date('01,5,2013', '%d,%m,%Y')", t("2013-05-01")),
        ("str_to_date('May 1, 2013', '%M %d,%Y')", t("2013-05-01")),
        ("str_to_date('a09:30:17', '%h:%i:%s')", Null),
        ("from_unixtime(1447430881)", t("2015-11-13 16:08:01")),
        ("from_unixtime(1447430881, '%Y %D %M %h:%i:%s %x')", t("2015 13th November 04:08:01 2015")),
        ("from_unixtime(-1)", Null),
        ("unix_timestamp('2015-11-13 10:20:19')", I(1_447_410_019)),
        ("unix_timestamp('2015-11-13 10:20:19.012')", Value::Real(1_447_410_019.012)),
        ("unix_timestamp('1960-01-01')", I(0)),
        ("datediff('2007-12-31 23:59:59', '2007-12-30')", I(1)),
        ("datediff('2010-11-30 23:59:59', '2010-12-31')", I(-31)),
        ("timestampdiff('MONTH', '2003-02-01', '2003-05-01')", I(3)),
        ("timestampdiff('YEAR', '2002-05-01', '2001-01-01')", I(-1)),
        ("timestampdiff('MINUTE', '2003-02-01', '2003-05-01 12:05:55')", I(128_885)),
        ("timestampdiff('FORTNIGHT', '2003-02-01', '2003-05-01')", Null),
        ("date_add('2018-05-01', 1, 'DAY')", t("2018-05-02")),
        ("date_sub('2018-05-01', 1, 'YEAR')", t("2017-05-01")),
        ("date_add('2020-12-31 23:59:59', 1, 'SECOND')", t("2021-01-01 00:00:00")),
        ("date_add('2018-12-31 23:59:59', 1, 'DAY')", t("2019-01-01 23:59:59")),
        ("date_add('2024-01-31', 1, 'MONTH')", t("2024-02-29")),
        ("date_sub('2005-01-01 00:00:00', 1, 'SECOND')", t("2004-12-31 23:59:59")),
        ("date_add('1992-12-31 23:59:59.000002', 1, 'MICROSECOND')", t("1992-12-31 23:59:59.000003")),
        ("date_add('2024-01-01', '2', 'week')", t("2024-01-15")),
        ("date_add(NULL, 1, 'DAY')", Null),
        ("adddate('2008-01-02', 31)", t("2008-02-02")),
        ("subdate('2008-01-02 12:00:00', 31)", t("2007-12-02 12:00:00")),
        ("year('1987-01-01')", I(1987)),
        ("month('2008-02-03')", I(2)),
        ("day('2007-02-03')", I(3)),
        ("dayofmonth('2007-02-03')", I(3)),
        ("hour('10:05:03')", I(10)),
        ("hour('272:59:59')", I(272)),
        ("minute('2008-02-03 10:05:03')", I(5)),
        ("second('10:05:03')", I(3)),
        ("microsecond('12:00:00.123456')", I(123_456)),
        ("microsecond('2019-12-31 23:59:59.000010')", I(10)),
        ("dayofweek('2007-02-03')", I(7)),
        ("weekday('2008-02-03 22:23:00')", I(6)),
        ("weekday('2007-11-06')", I(1)),
        ("dayofyear('2007-02-03')", I(34)),
        ("quarter('2008-04-01')", I(2)),
        ("monthname('2008-02-03')", t("February")),
        ("dayname('2007-02-03')", t("Saturday")),
        ("to_days(950501)", I(728_779)),
        ("to_days('2007-10-07')", I(733_321)),
        ("last_day('2003-02-05')", t("2003-02-28")),
        ("last_day('2004-02-05')", t("2004-02-29")),
        ("last_day('2004-01-01 01:01:01')", t("2004-01-31")),
        ("last_day('2003-03-32')", Null),
        ("week('2008-02-20')", I(7)),
        ("week('2008-02-20', 1)", I(8)),
        ("week('2008-12-31', 1)", I(53)),
        ("weekofyear('2008-02-20')", I(8)),
        ("extract('YEAR', '2019-07-02')", I(2019)),
        ("extract('MICROSECOND', '2003-01-02 10:30:00.000123')", I(123)),
    ]);
}

#[test]
fn clock_functions_read_the_host() {
    use Value::Integer as I;
    check(&[
        ("now()", t("2024-03-05 14:07:09")),
        ("now(3)", t("2024-03-05 14:07:09.123")),
        ("sysdate(6)", t("2024-03-05 14:07:09.123456")),
        ("utc_timestamp()", t("2024-03-05 14:07:09")),
        ("curdate()", t("2024-03-05")),
        ("curtime()", t("14:07:09")),
        ("unix_timestamp()", I(1_709_647_629)),
        ("now(7)", Value::Null),
    ]);
}

#[test]
fn string_functions() {
    use Value::{Integer as I, Null};
    check(&[
        ("lpad('hi', 4, '??')", t("??hi")),
        ("lpad('hi', 1, '??')", t("h")),
        ("rpad('hi', 5, '?')", t("hi???")),
        ("rpad(5, 3, 0)", t("500")),
        ("lpad('hi', 4, '')", Null),
        ("locate('bar', 'foobarbar')", I(4)),
        ("locate('xbar', 'foobar')", I(0)),
        ("locate('bar', 'foobarbar', 5)", I(7)),
        ("locate(NULL, 'a')", Null),
        ("instr('foobarbar', 'bar')", I(4)),
        ("find_in_set('b', 'a,b,c,d')", I(2)),
        ("find_in_set('z', 'a,b,c,d')", I(0)),
        ("format(12332.123456, 4)", t("12,332.1235")),
        ("format(12332.1, 4)", t("12,332.1000")),
        ("format(12332.2, 0)", t("12,332")),
        ("format('12332.2', 2, 'en_US')", t("12,332.20")),
        ("format(-1234567, 0)", t("-1,234,567")),
        ("format('abc', 2)", t("0.00")),
        ("substring_index('www.mysql.com', '.', 2)", t("www.mysql")),
        ("substring_index('www.mysql.com', '.', -2)", t("mysql.com")),
        ("left('foobarbar', 5)", t("fooba")),
        ("right('foobarbar', 4)", t("rbar")),
        ("reverse('abc')", t("cba")),
        ("reverse('añb')", t("bña")),
        ("space(6)", t("      ")),
        ("space(-1)", t("")),
        ("repeat('MySQL', 3)", t("MySQLMySQLMySQL")),
        ("char_length('añb')", I(3)),
        ("character_length('abc')", I(3)),
        ("concat('My', 'S', 'QL')", t("MySQL")),
        ("concat('My', NULL, 'QL')", Null),
        ("concat(14.3)", t("14.3")),
        ("concat('a', 1, 2.5)", t("a12.5")),
        ("concat_ws(',', 'First name', NULL, 'Last Name')", t("First name,Last Name")),
        ("upper('été')", t("ÉTÉ")),
        ("ucase('abc')", t("ABC")),
        ("lcase('ÀB')", t("àb")),
        ("strcmp('text', 'text2')", I(-1)),
        ("strcmp('text2', 'text')", I(1)),
        ("strcmp('text', 'text')", I(0)),
        ("ascii('2')", I(50)),
        ("ascii('dx')", I(100)),
        ("ascii('')", I(0)),
    ]);
}

#[test]
fn division_operators() {
    use Value::{Integer as I, Null, Real as R};
    check(&[
        ("canopy_div(5, 2)", I(2)),
        ("canopy_div(-5, 2)", I(-2)),
        ("canopy_div(5.5, 0.5)", I(11)),
        ("canopy_div('7', 2)", I(3)),
        ("canopy_div(5, 0)", Null),
        ("canopy_div(NULL, 2)", Null),
        ("mod(234, 10)", I(4)),
        ("mod(253, 7)", I(1)),
        ("mod(29, 9)", I(2)),
        ("mod(-5, 3)", I(-2)),
        ("mod(34.5, 3)", R(1.5)),
        ("mod(5, 0)", Null),
    ]);
    let conn = conn();
    let overflow = conn.query_row("SELECT canopy_div(-9223372036854775808, -1)", [], |r| r.get::<_, i64>(0));
    assert!(overflow.is_err(), "{overflow:?}");
}

#[test]
fn randomness_uuid_and_sleep() {
    let conn = conn();
    // The manual's first values of RAND(3) and RAND(3) twice in one statement continue the sequence.
    assert_eq!(eval(&conn, "rand(3)"), Value::Real(0.9057697559760601));
    let two: (f64, f64) =
        conn.query_row("SELECT rand(3), rand(3) FROM (SELECT 1)", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(two.0, 0.9057697559760601);
    let rows: Vec<f64> = conn
        .prepare("SELECT rand(3) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows[0], 0.9057697559760601);
    assert!(rows[0] != rows[1] && rows[1] != rows[2], "{rows:?}");
    let unseeded = eval(&conn, "rand()");
    assert!(matches!(unseeded, Value::Real(r) if (0.0..1.0).contains(&r)), "{unseeded:?}");
    let (a, b): (String, String) = conn.query_row("SELECT uuid(), uuid()", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_ne!(a, b);
    for uuid in [&a, &b] {
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert_eq!(&uuid[14..15], "1", "version 1: {uuid}");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "RFC 4122 variant: {uuid}");
    }
    assert_eq!(eval(&conn, "sleep(0.001)"), Value::Integer(0));
    assert_eq!(eval(&conn, "sleep(1000)"), Value::Integer(1), "an interrupted sleep answers 1");
    assert_eq!(eval(&conn, "sleep(NULL)"), Value::Integer(0));
}

#[test]
fn clock_values_are_written_as_mysql_shows_them() {
    assert_eq!(clock_value(0, Clock::DateTime, 0), t("1970-01-01 00:00:00"));
    assert_eq!(clock_value(NOW_MICROS, Clock::Date, 0), t("2024-03-05"));
    assert_eq!(clock_value(NOW_MICROS, Clock::Time, 2), t("14:07:09.12"));
}
