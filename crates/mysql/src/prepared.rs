//! Prepared statements, implemented entirely in the front end: the per-connection registry of statement texts,
//! long data sent ahead of execution, and decoding COM_STMT_EXECUTE's binary parameters into values that are then
//! written into the text as SQL literals. The backend never sees a prepared statement, only finished SQL text.
//!
//! Limits: at most `MAX_STATEMENTS` open statements per connection, and long data per statement bounded by the
//! packet limit, so a client cannot grow server memory beyond what it could send in packets anyway.

use std::collections::HashMap;

use canopy_sql::Value;
use mysql_common::constants::ColumnType;

use crate::MysqlError;
use crate::split::{count_placeholders, substitute_placeholders};
use crate::wire::{Malformed, Reader};

/// Open statements per connection (MySQL's default global `max_prepared_stmt_count`).
pub(crate) const MAX_STATEMENTS: usize = 16382;
/// Set in a parameter's flag byte when the integer is unsigned.
const UNSIGNED: u8 = 0x80;

/// A parameter type as sent by the client: the MySQL type byte and whether it is unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParamType {
    pub type_byte: u8,
    pub unsigned: bool,
}

#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    /// `sql` with its placeholders numbered (`?1`, `?2`, ...), as the backend's `Session::execute` receives it.
    pub numbered: String,
    /// Whether the backend runs this statement (the front end answers `SET`, `USE` and `SELECT @@var` itself).
    pub forward: bool,
    pub param_count: u16,
    /// Types bound by the last execute that sent them; reused when the client sends none.
    bound_types: Option<Vec<ParamType>>,
    long_data: HashMap<u16, Vec<u8>>,
    long_data_bytes: usize,
    long_data_error: Option<MysqlError>,
}

impl Statement {
    /// Forgets long data, as COM_STMT_RESET and every execute do.
    pub(crate) fn reset(&mut self) {
        self.long_data.clear();
        self.long_data_bytes = 0;
        self.long_data_error = None;
    }
}

/// The statements open on one connection.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    by_id: HashMap<u32, Statement>,
    next_id: u32,
}

impl Statements {
    /// Registers a statement and returns its id. The caller has already checked it is a single statement.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<(u32, &mut Statement), MysqlError> {
        if self.by_id.len() >= MAX_STATEMENTS {
            return Err(MysqlError::too_many_statements(MAX_STATEMENTS));
        }
        let param_count = u16::try_from(count_placeholders(sql))
            .map_err(|_| MysqlError::new(1390, "HY000", "Prepared statement contains too many placeholders"))?;
        // Ids start at 1 and skip ones still in use after wrapping around.
        let id = loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.by_id.contains_key(&self.next_id) {
                break self.next_id;
            }
        };
        let numbers: Vec<String> = (1..=usize::from(param_count)).map(|n| format!("?{n}")).collect();
        let statement = Statement {
            sql: sql.to_string(),
            numbered: substitute_placeholders(sql, &numbers),
            forward: false,
            param_count,
            bound_types: None,
            long_data: HashMap::new(),
            long_data_bytes: 0,
            long_data_error: None,
        };
        Ok((id, self.by_id.entry(id).or_insert(statement)))
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Statement> {
        self.by_id.get_mut(&id)
    }

    pub(crate) fn close(&mut self, id: u32) {
        self.by_id.remove(&id);
    }

    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
    }
}

/// Handles COM_STMT_SEND_LONG_DATA (payload after the command byte). There is no response; problems are reported by
/// the next execute, as MySQL does.
pub(crate) fn append_long_data(statements: &mut Statements, payload: &[u8], limit_bytes: usize) {
    let mut r = Reader::new(payload);
    let (Ok(id), Ok(param)) = (r.u32(), r.u16()) else { return };
    let Some(statement) = statements.get_mut(id) else { return };
    let data = r.rest();
    if param >= statement.param_count {
        statement.long_data_error = Some(MysqlError::wrong_arguments());
        return;
    }
    if statement.long_data_bytes + data.len() > limit_bytes {
        statement.long_data_error = Some(MysqlError::packet_too_large());
        return;
    }
    statement.long_data_bytes += data.len();
    statement.long_data.entry(param).or_default().extend_from_slice(data);
}

/// The statement id a COM_STMT_EXECUTE payload (after the command byte) names.
pub(crate) fn execute_statement_id(payload: &[u8]) -> Result<u32, Malformed> {
    Reader::new(payload).u32()
}

/// Decodes COM_STMT_EXECUTE (payload after the command byte) for `statement` and returns the SQL text with every
/// placeholder replaced by a literal. Long data is consumed.
pub(crate) fn bind(statement: &mut Statement, payload: &[u8]) -> Result<String, MysqlError> {
    let values = bind_values(statement, payload)?;
    Ok(literal_text(&statement.sql, &values))
}

/// `sql` with its placeholders replaced by the literals of `values`, in order: MySQL literals, so each value stays
/// one literal with its exact value whatever quotes and backslashes it holds.
pub(crate) fn literal_text(sql: &str, values: &[Value]) -> String {
    let literals: Vec<String> = values.iter().map(Value::to_mysql_literal).collect();
    substitute_placeholders(sql, &literals)
}

/// Decodes COM_STMT_EXECUTE (payload after the command byte) for `statement` into its parameter values, in order.
/// Long data is consumed.
pub(crate) fn bind_values(statement: &mut Statement, payload: &[u8]) -> Result<Vec<Value>, MysqlError> {
    if let Some(error) = statement.long_data_error.take() {
        statement.reset();
        return Err(error);
    }
    let long_data = std::mem::take(&mut statement.long_data);
    statement.reset();
    decode_params(payload, statement.param_count, &mut statement.bound_types, &long_data)
}

/// Decodes the parameter block of COM_STMT_EXECUTE: statement id, flags, iteration count, then (when there are
/// parameters) the NULL bitmap, the new-params-bound flag, the types if bound, and the values.
pub(crate) fn decode_params(
    payload: &[u8],
    param_count: u16,
    bound_types: &mut Option<Vec<ParamType>>,
    long_data: &HashMap<u16, Vec<u8>>,
) -> Result<Vec<Value>, MysqlError> {
    let malformed = |_: Malformed| MysqlError::wrong_arguments();
    let mut r = Reader::new(payload);
    let _statement_id = r.u32().map_err(malformed)?;
    let _cursor_flags = r.u8().map_err(malformed)?;
    let _iterations = r.u32().map_err(malformed)?;
    if param_count == 0 {
        return Ok(vec![]);
    }
    let count = usize::from(param_count);
    let null_bitmap = r.take(count.div_ceil(8)).map_err(malformed)?;
    let new_params_bound = r.u8().map_err(malformed)?;
    if new_params_bound == 1 {
        let mut types = Vec::with_capacity(count);
        for _ in 0..count {
            let type_byte = r.u8().map_err(malformed)?;
            let flags = r.u8().map_err(malformed)?;
            types.push(ParamType { type_byte, unsigned: flags & UNSIGNED != 0 });
        }
        *bound_types = Some(types);
    }
    let types = bound_types.as_ref().ok_or_else(MysqlError::wrong_arguments)?;
    let mut values = Vec::with_capacity(count);
    for (i, ty) in types.iter().enumerate() {
        let index = u16::try_from(i).map_err(|_| MysqlError::wrong_arguments())?;
        // A parameter sent as long data has no value in this packet (and no NULL bit).
        if let Some(data) = long_data.get(&index) {
            values.push(bytes_value(ty.type_byte, data.clone()));
            continue;
        }
        if null_bitmap[i / 8] & (1 << (i % 8)) != 0 {
            values.push(Value::Null);
            continue;
        }
        values.push(decode_value(&mut r, *ty)?);
    }
    Ok(values)
}

/// One binary-protocol parameter value.
fn decode_value(r: &mut Reader<'_>, ty: ParamType) -> Result<Value, MysqlError> {
    let wrong = |_: Malformed| MysqlError::wrong_arguments();
    let column_type = ColumnType::try_from(ty.type_byte).map_err(|_| MysqlError::wrong_arguments())?;
    use ColumnType::*;
    let value = match column_type {
        MYSQL_TYPE_NULL => Value::Null,
        MYSQL_TYPE_TINY => {
            let b = r.u8().map_err(wrong)?;
            Value::Integer(if ty.unsigned { i64::from(b) } else { i64::from(b as i8) })
        }
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => {
            let v = r.u16().map_err(wrong)?;
            Value::Integer(if ty.unsigned { i64::from(v) } else { i64::from(v as i16) })
        }
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => {
            let v = r.u32().map_err(wrong)?;
            Value::Integer(if ty.unsigned { i64::from(v) } else { i64::from(v as i32) })
        }
        MYSQL_TYPE_LONGLONG => {
            let v = r.u64().map_err(wrong)?;
            // SQLite has no unsigned 64-bit integer: above i64::MAX it reads such a literal as REAL, so do we.
            match (ty.unsigned, i64::try_from(v)) {
                (true, Err(_)) => Value::Real(v as f64),
                _ => Value::Integer(v as i64),
            }
        }
        MYSQL_TYPE_FLOAT => Value::Real(f64::from(f32::from_le_bytes(r.array().map_err(wrong)?))),
        MYSQL_TYPE_DOUBLE => Value::Real(f64::from_le_bytes(r.array().map_err(wrong)?)),
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => decimal_value(r.lenenc_bytes().map_err(wrong)?),
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Value::Text(date_text(r.lenenc_bytes().map_err(wrong)?, false)?),
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP2 => {
            Value::Text(date_text(r.lenenc_bytes().map_err(wrong)?, true)?)
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Value::Text(time_text(r.lenenc_bytes().map_err(wrong)?)?),
        _ => bytes_value(ty.type_byte, r.lenenc_bytes().map_err(wrong)?.to_vec()),
    };
    Ok(value)
}

/// Bytes sent for a string-like or blob-like parameter. Blob, BIT and GEOMETRY types stay blobs; the string types
/// become text when they are valid UTF-8 and blobs otherwise, so no byte is ever altered.
fn bytes_value(type_byte: u8, bytes: Vec<u8>) -> Value {
    let binary = matches!(
        ColumnType::try_from(type_byte),
        Ok(ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB
            | ColumnType::MYSQL_TYPE_BLOB
            | ColumnType::MYSQL_TYPE_BIT
            | ColumnType::MYSQL_TYPE_GEOMETRY)
    );
    if binary {
        return Value::Blob(bytes);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Value::Text(text),
        Err(e) => Value::Blob(e.into_bytes()),
    }
}

/// A DECIMAL parameter: an integer when it is one, else a real, else (not a number at all) text for the backend to
/// judge.
fn decimal_value(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        return Value::Integer(i);
    }
    match trimmed.parse::<f64>() {
        Ok(r) if r.is_finite() => Value::Real(r),
        _ => Value::Text(text.into_owned()),
    }
}

/// DATE/DATETIME/TIMESTAMP in the binary protocol: length 0, 4, 7 or 11, then year, month, day, hour, minute,
/// second, microseconds.
fn date_text(bytes: &[u8], with_time: bool) -> Result<String, MysqlError> {
    let mut r = Reader::new(bytes);
    let wrong = |_: Malformed| MysqlError::wrong_arguments();
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut micros) =
        (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
    if matches!(bytes.len(), 4 | 7 | 11) {
        year = r.u16().map_err(wrong)?;
        month = r.u8().map_err(wrong)?;
        day = r.u8().map_err(wrong)?;
    }
    if matches!(bytes.len(), 7 | 11) {
        hour = r.u8().map_err(wrong)?;
        minute = r.u8().map_err(wrong)?;
        second = r.u8().map_err(wrong)?;
    }
    if bytes.len() == 11 {
        micros = r.u32().map_err(wrong)?;
    }
    if !matches!(bytes.len(), 0 | 4 | 7 | 11) {
        return Err(MysqlError::wrong_arguments());
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    Ok(match (with_time, micros) {
        (false, _) => date,
        (true, 0) => format!("{date} {hour:02}:{minute:02}:{second:02}"),
        (true, _) => format!("{date} {hour:02}:{minute:02}:{second:02}.{micros:06}"),
    })
}

/// TIME in the binary protocol: length 0, 8 or 12, then sign, days, hours, minutes, seconds, microseconds. Days fold
/// into hours, as MySQL prints `-838:59:59`.
fn time_text(bytes: &[u8]) -> Result<String, MysqlError> {
    if bytes.is_empty() {
        return Ok("00:00:00".to_string());
    }
    if !matches!(bytes.len(), 8 | 12) {
        return Err(MysqlError::wrong_arguments());
    }
    let mut r = Reader::new(bytes);
    let wrong = |_: Malformed| MysqlError::wrong_arguments();
    let negative = r.u8().map_err(wrong)? != 0;
    let days = r.u32().map_err(wrong)?;
    let (hour, minute, second) = (r.u8().map_err(wrong)?, r.u8().map_err(wrong)?, r.u8().map_err(wrong)?);
    let micros = if bytes.len() == 12 { r.u32().map_err(wrong)? } else { 0 };
    let hours = u64::from(days) * 24 + u64::from(hour);
    let sign = if negative { "-" } else { "" };
    Ok(match micros {
        0 => format!("{sign}{hours:02}:{minute:02}:{second:02}"),
        _ => format!("{sign}{hours:02}:{minute:02}:{second:02}.{micros:06}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::put_lenenc_bytes;

    /// Builds an execute payload: statement 1, no cursor, one iteration, then the given parameter block.
    fn execute_payload(null_bitmap: &[u8], types: Option<&[(u8, u8)]>, values: &[u8]) -> Vec<u8> {
        let mut out = vec![1, 0, 0, 0, 0, 1, 0, 0, 0];
        out.extend_from_slice(null_bitmap);
        match types {
            Some(types) => {
                out.push(1);
                for (t, f) in types {
                    out.extend_from_slice(&[*t, *f]);
                }
            }
            None => out.push(0),
        }
        out.extend_from_slice(values);
        out
    }

    fn decode(payload: &[u8], count: u16, bound: &mut Option<Vec<ParamType>>) -> Result<Vec<Value>, MysqlError> {
        decode_params(payload, count, bound, &HashMap::new())
    }

    #[test]
    fn decodes_every_integer_width_signed_and_unsigned() {
        let types = [(1, 0), (1, 0x80), (2, 0), (2, 0x80), (3, 0), (3, 0x80), (8, 0), (8, 0x80), (8, 0x80)];
        let mut values = vec![0xFF, 0xFF, 0xFE, 0xFF, 0xFE, 0xFF];
        values.extend_from_slice(&(-3i32).to_le_bytes());
        values.extend_from_slice(&u32::MAX.to_le_bytes());
        values.extend_from_slice(&i64::MIN.to_le_bytes());
        values.extend_from_slice(&(i64::MAX as u64).to_le_bytes());
        values.extend_from_slice(&u64::MAX.to_le_bytes());
        let payload = execute_payload(&[0, 0], Some(&types), &values);
        let decoded = decode(&payload, 9, &mut None).unwrap();
        assert_eq!(
            decoded,
            vec![
                Value::Integer(-1),
                Value::Integer(255),
                Value::Integer(-2),
                Value::Integer(65534),
                Value::Integer(-3),
                Value::Integer(i64::from(u32::MAX)),
                Value::Integer(i64::MIN),
                Value::Integer(i64::MAX),
                Value::Real(u64::MAX as f64),
            ]
        );
    }

    #[test]
    fn decodes_floats_strings_blobs_decimals_and_nulls() {
        let types = [(4, 0), (5, 0), (253, 0), (253, 0), (252, 0), (246, 0), (6, 0), (253, 0)];
        let mut values = Vec::new();
        values.extend_from_slice(&1.5f32.to_le_bytes());
        values.extend_from_slice(&(-0.25f64).to_le_bytes());
        put_lenenc_bytes(&mut values, "héllo".as_bytes());
        put_lenenc_bytes(&mut values, &[0xFF, 0x00]);
        put_lenenc_bytes(&mut values, b"abc");
        put_lenenc_bytes(&mut values, b"12.50");
        // The last parameter is NULL by the bitmap (bit 7) and has no bytes.
        let payload = execute_payload(&[0b1000_0000], Some(&types), &values);
        let decoded = decode(&payload, 8, &mut None).unwrap();
        assert_eq!(
            decoded,
            vec![
                Value::Real(1.5),
                Value::Real(-0.25),
                Value::Text("héllo".into()),
                Value::Blob(vec![0xFF, 0x00]),
                Value::Blob(b"abc".to_vec()),
                Value::Real(12.5),
                Value::Null,
                Value::Null,
            ]
        );
    }

    #[test]
    fn decodes_dates_times_and_datetimes_as_text() {
        let types = [(10, 0), (12, 0), (12, 0), (11, 0), (7, 0)];
        let mut values = Vec::new();
        put_lenenc_bytes(&mut values, &[0xE8, 0x07, 2, 29]);
        put_lenenc_bytes(&mut values, &[0xE8, 0x07, 2, 29, 13, 5, 9]);
        put_lenenc_bytes(&mut values, &[0xE8, 0x07, 2, 29, 13, 5, 9, 0x40, 0xE2, 0x01, 0]);
        put_lenenc_bytes(&mut values, &[1, 1, 0, 0, 0, 2, 3, 4]);
        put_lenenc_bytes(&mut values, &[]);
        let payload = execute_payload(&[0], Some(&types), &values);
        let decoded = decode(&payload, 5, &mut None).unwrap();
        let texts: Vec<Value> =
            ["2024-02-29", "2024-02-29 13:05:09", "2024-02-29 13:05:09.123456", "-26:03:04", "0000-00-00 00:00:00"]
                .iter()
                .map(|s| Value::Text(s.to_string()))
                .collect();
        assert_eq!(decoded, texts);
    }

    #[test]
    fn reuses_types_from_the_previous_execute_when_none_are_sent() {
        let mut bound = None;
        let first = execute_payload(&[0], Some(&[(8, 0)]), &7i64.to_le_bytes());
        assert_eq!(decode(&first, 1, &mut bound).unwrap(), vec![Value::Integer(7)]);
        let second = execute_payload(&[0], None, &9i64.to_le_bytes());
        assert_eq!(decode(&second, 1, &mut bound).unwrap(), vec![Value::Integer(9)]);
        // Without any earlier types the client's packet cannot be understood.
        assert_eq!(decode(&second, 1, &mut None).unwrap_err().code, 1210);
    }

    #[test]
    fn truncated_and_unknown_parameters_are_errors_not_panics() {
        let full = execute_payload(&[0], Some(&[(8, 0), (253, 0)]), &[1, 0, 0, 0, 0, 0, 0, 0, 3, b'a']);
        for len in 0..full.len() {
            assert!(decode(&full[..len], 2, &mut None).is_err(), "prefix of {len} bytes");
        }
        let unknown_type = execute_payload(&[0], Some(&[(200, 0)]), &[0]);
        assert_eq!(decode(&unknown_type, 1, &mut None).unwrap_err().code, 1210);
    }

    #[test]
    fn long_data_replaces_the_packet_value_and_is_bounded() {
        let mut statements = Statements::default();
        let (id, _) = statements.prepare("SELECT ?, ?").unwrap();
        let mut chunk = id.to_le_bytes().to_vec();
        chunk.extend_from_slice(&0u16.to_le_bytes());
        chunk.extend_from_slice(b"big ");
        append_long_data(&mut statements, &chunk, 100);
        append_long_data(&mut statements, &chunk, 100);
        let statement = statements.get_mut(id).unwrap();
        // Parameter 0 comes from long data; parameter 1 is in the packet.
        let mut values = Vec::new();
        put_lenenc_bytes(&mut values, b"x");
        let payload = execute_payload(&[0], Some(&[(252, 0), (253, 0)]), &values);
        assert_eq!(bind(statement, &payload).unwrap(), "SELECT X'6269672062696720', 'x'");
        // Too much long data is reported by the next execute.
        let mut huge = id.to_le_bytes().to_vec();
        huge.extend_from_slice(&1u16.to_le_bytes());
        huge.extend_from_slice(&[0; 101]);
        append_long_data(&mut statements, &huge, 100);
        let statement = statements.get_mut(id).unwrap();
        assert_eq!(bind(statement, &payload).unwrap_err().code, 1153);
    }

    #[test]
    fn statement_ids_are_unique_and_bounded() {
        let mut statements = Statements::default();
        let (a, _) = statements.prepare("SELECT 1").unwrap();
        let (b, s) = statements.prepare("SELECT ? + ?").unwrap();
        assert_eq!(s.param_count, 2);
        assert_ne!(a, b);
        statements.close(a);
        assert!(statements.get_mut(a).is_none());
        for _ in 0..MAX_STATEMENTS - 1 {
            statements.prepare("SELECT 1").unwrap();
        }
        assert_eq!(statements.prepare("SELECT 1").unwrap_err().code, 1461);
    }
}
