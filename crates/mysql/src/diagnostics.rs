//! MySQL's diagnostics area: the conditions (notes, warnings, an error) the previous statement raised, which
//! `SHOW WARNINGS`, `SHOW ERRORS`, their `COUNT(*)` forms, `@@warning_count` and `@@error_count` read. It only keeps
//! and lists them; the command loop decides which statement replaces them (any statement except the diagnostics
//! statements themselves) and whether notes are kept (`sql_notes`).

use canopy_sql::{Column, ResultSet, Value};

use crate::{Level, Warning};

/// Conditions kept per statement, as MySQL's default `max_error_count`: a statement raising more still counts them
/// all in `@@warning_count`, and SHOW WARNINGS lists the first ones.
pub(crate) const CONDITIONS_MAX: usize = 64;

/// What SHOW WARNINGS / SHOW ERRORS show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// Every condition (SHOW WARNINGS, `@@warning_count`).
    All,
    /// Errors only (SHOW ERRORS, `@@error_count`).
    Errors,
}

/// `LIMIT [offset,] count` of SHOW WARNINGS / SHOW ERRORS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub offset: u64,
    pub count: u64,
}

/// The previous statement's conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Diagnostics {
    /// At most `CONDITIONS_MAX`, in the order they were raised.
    kept: Vec<Warning>,
    /// Every condition raised, kept or not.
    warning_count: u64,
    error_count: u64,
}

impl Diagnostics {
    /// The diagnostics of a statement that raised `conditions`; notes are dropped when `notes` is false
    /// (`SET sql_notes = 0`, which dumps set while they load).
    pub(crate) fn of(conditions: Vec<Warning>, notes: bool) -> Self {
        let raised: Vec<Warning> = conditions.into_iter().filter(|c| notes || c.level != Level::Note).collect();
        let error_count = raised.iter().filter(|c| c.level == Level::Error).count() as u64;
        let warning_count = raised.len() as u64;
        let kept = raised.into_iter().take(CONDITIONS_MAX).collect();
        Diagnostics { kept, warning_count, error_count }
    }

    /// `@@warning_count` (every condition, errors and notes included, as MySQL counts them) or `@@error_count`.
    pub(crate) fn count(&self, shown: Shown) -> u64 {
        match shown {
            Shown::All => self.warning_count,
            Shown::Errors => self.error_count,
        }
    }

    /// The warning count an OK or end-of-rows packet carries.
    pub(crate) fn packet_count(&self) -> u16 {
        crate::response::warning_count(usize::try_from(self.warning_count).unwrap_or(usize::MAX))
    }

    /// SHOW WARNINGS / SHOW ERRORS: `Level`, `Code`, `Message` rows.
    pub(crate) fn show(&self, shown: Shown, limit: Option<Limit>) -> ResultSet {
        let limit = limit.unwrap_or(Limit { offset: 0, count: u64::MAX });
        let rows = self
            .kept
            .iter()
            .filter(|c| shown == Shown::All || c.level == Level::Error)
            .skip(usize::try_from(limit.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit.count).unwrap_or(usize::MAX))
            .map(|c| vec![Value::text(c.level.name()), Value::Integer(i64::from(c.code)), Value::text(&c.message)])
            .collect();
        let columns = ["Level", "Code", "Message"].into_iter().map(Column::new).collect();
        ResultSet { columns, rows }
    }

    /// SHOW COUNT(*) WARNINGS / SHOW COUNT(*) ERRORS: one row, named as MySQL names it.
    pub(crate) fn show_count(&self, shown: Shown) -> ResultSet {
        let name = match shown {
            Shown::All => "@@session.warning_count",
            Shown::Errors => "@@session.error_count",
        };
        let n = Value::Integer(i64::try_from(self.count(shown)).unwrap_or(i64::MAX));
        ResultSet { columns: vec![Column::new(name)], rows: vec![vec![n]] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(code: u16, message: &str) -> Warning {
        Warning::new(Level::Note, code, message)
    }

    fn rows(result: &ResultSet) -> Vec<(String, i64, String)> {
        result
            .rows
            .iter()
            .map(|r| match r.as_slice() {
                [Value::Text(level), Value::Integer(code), Value::Text(message)] => {
                    (level.clone(), *code, message.clone())
                }
                other => panic!("unexpected row {other:?}"),
            })
            .collect()
    }

    #[test]
    fn conditions_are_listed_in_order_with_their_level() {
        let d = Diagnostics::of(
            vec![
                Warning::new(Level::Warning, 1266, "Using storage engine Canopy for table 't'"),
                note(1051, "Unknown table 'db.u'"),
            ],
            true,
        );
        assert_eq!(
            rows(&d.show(Shown::All, None)),
            [
                ("Warning".to_string(), 1266, "Using storage engine Canopy for table 't'".to_string()),
                ("Note".to_string(), 1051, "Unknown table 'db.u'".to_string())
            ]
        );
        assert!(d.show(Shown::Errors, None).rows.is_empty());
        assert_eq!((d.count(Shown::All), d.count(Shown::Errors), d.packet_count()), (2, 0, 2));
        assert_eq!(d.show_count(Shown::All).rows, vec![vec![Value::Integer(2)]]);
        assert_eq!(d.show_count(Shown::Errors).columns[0].name, "@@session.error_count");
    }

    #[test]
    fn an_error_counts_as_a_warning_and_an_error() {
        let d = Diagnostics::of(vec![Warning::new(Level::Error, 1146, "Table 'db.t' doesn't exist")], true);
        assert_eq!((d.count(Shown::All), d.count(Shown::Errors)), (1, 1));
        assert_eq!(rows(&d.show(Shown::Errors, None))[0].0, "Error");
    }

    #[test]
    fn limit_takes_offset_and_count() {
        let d = Diagnostics::of((1..=5).map(|i| note(1051, &format!("t{i}"))).collect(), true);
        let shown = |offset, count| {
            rows(&d.show(Shown::All, Some(Limit { offset, count }))).into_iter().map(|r| r.2).collect::<Vec<_>>()
        };
        assert_eq!(shown(0, 2), ["t1", "t2"]);
        assert_eq!(shown(3, 10), ["t4", "t5"]);
        assert!(shown(0, 0).is_empty());
        assert!(shown(9, 1).is_empty());
    }

    #[test]
    fn notes_are_dropped_under_sql_notes_off() {
        let d = Diagnostics::of(vec![note(1007, "exists"), Warning::new(Level::Warning, 1266, "engine")], false);
        assert_eq!(d.count(Shown::All), 1);
        assert_eq!(rows(&d.show(Shown::All, None))[0].1, 1266);
    }

    #[test]
    fn more_than_the_kept_conditions_are_still_counted() {
        let d = Diagnostics::of((0..CONDITIONS_MAX + 6).map(|_| note(1051, "gone")).collect(), true);
        assert_eq!(d.count(Shown::All), (CONDITIONS_MAX + 6) as u64);
        assert_eq!(d.show(Shown::All, None).rows.len(), CONDITIONS_MAX);
    }

    #[test]
    fn nothing_raised_is_nothing_shown() {
        let d = Diagnostics::default();
        assert_eq!((d.count(Shown::All), d.packet_count()), (0, 0));
        assert!(d.show(Shown::All, None).rows.is_empty());
        assert_eq!(d.show(Shown::All, None).columns.len(), 3);
    }
}
