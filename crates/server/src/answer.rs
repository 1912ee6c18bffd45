//! What a statement returns to the front end: rows, or a count of affected rows with the last insert id and the
//! conditions (notes, warnings) the statement raised.

use canopy_sql::ResultSet;

use crate::error::Notice;

/// The result of one statement as the front end will show it. Only statements without a result set raise
/// conditions today (DDL that Canopy carries out differently from what was written), so rows carry none.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Rows(ResultSet),
    Done { affected_rows: u64, last_insert_id: u64, info: String, notices: Vec<Notice> },
}

impl Answer {
    pub fn done() -> Answer {
        Answer::Done { affected_rows: 0, last_insert_id: 0, info: String::new(), notices: Vec::new() }
    }

    pub fn affected(rows: u64) -> Answer {
        Answer::Done { affected_rows: rows, last_insert_id: 0, info: String::new(), notices: Vec::new() }
    }

    /// A statement that affected no rows and raised `notices` (`DROP TABLE IF EXISTS` of a missing table).
    pub fn noted(notices: Vec<Notice>) -> Answer {
        Answer::Done { affected_rows: 0, last_insert_id: 0, info: String::new(), notices }
    }
}
