//! What a statement returns to the front end: rows, or a count of affected rows with the last insert id.

use canopy_sql::ResultSet;

/// The result of one statement as the front end will show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Rows(ResultSet),
    Done { affected_rows: u64, last_insert_id: u64, info: String },
}

impl Answer {
    pub fn done() -> Answer {
        Answer::Done { affected_rows: 0, last_insert_id: 0, info: String::new() }
    }

    pub fn affected(rows: u64) -> Answer {
        Answer::Done { affected_rows: rows, last_insert_id: 0, info: String::new() }
    }
}
