//! Shared test harness: a small backend with fixed answers that records every statement it receives, a server on a
//! loopback port, and a raw protocol client for the cases a real client library cannot produce (garbage, oversized
//! packets, clients without CLIENT_DEPRECATE_EOF, plugin switches, hanging up mid-result).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use canopy_mysql::{Backend, ConnectionInfo, Level, Limits, MysqlError, Reply, Session, Warning, serve};
use canopy_sql::{Column, ResultSet, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound on any single wait in these tests; reaching it is a failure, not a synchronisation mechanism.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestBackend {
    seen: Arc<Mutex<Vec<String>>>,
    closed: mpsc::UnboundedSender<u32>,
}

pub struct TestSession {
    connection_id: u32,
    database: Option<String>,
    seen: Arc<Mutex<Vec<String>>>,
    closed: mpsc::UnboundedSender<u32>,
}

impl Drop for TestSession {
    fn drop(&mut self) {
        let _ = self.closed.send(self.connection_id);
    }
}

fn known_database(db: &str) -> Result<(), MysqlError> {
    match db {
        "shop" | "test" => Ok(()),
        other => Err(MysqlError::new(1049, "42000", format!("Unknown database '{other}'"))),
    }
}

impl Backend for TestBackend {
    type Session = TestSession;

    fn credentials(&self, user: &str) -> Option<canopy_mysql::auth::Credentials> {
        use canopy_mysql::auth::{Credentials, native_authentication_string};
        match user {
            "root" => Some(Credentials::from_password("")),
            "alice" => Some(Credentials::from_password("secret")),
            // An account identified WITH mysql_native_password: no SHA-256 digest.
            "nat" => Credentials::from_stored(&native_authentication_string("secret"), None),
            _ => None,
        }
    }

    async fn open_session(&self, info: ConnectionInfo) -> Result<TestSession, MysqlError> {
        if let Some(db) = &info.database {
            known_database(db)?;
        }
        Ok(TestSession {
            connection_id: info.connection_id,
            database: info.database,
            seen: self.seen.clone(),
            closed: self.closed.clone(),
        })
    }
}

impl Session for TestSession {
    async fn query(&mut self, sql: &str) -> Reply {
        self.seen.lock().unwrap().push(sql.to_string());
        match sql {
            "SELECT kinds" => Reply::rows(kinds()),
            "SELECT big" => Reply::rows(big()),
            // Two conditions on an OK, one on a result set: what SHOW WARNINGS and the packets report.
            "DROP TABLE IF EXISTS gone, engine" => Reply::Ok {
                affected_rows: 0,
                last_insert_id: 0,
                info: String::new(),
                warnings: vec![
                    Warning::new(Level::Note, 1051, "Unknown table 'shop.gone'"),
                    Warning::new(Level::Warning, 1266, "Using storage engine Canopy for table 'engine'"),
                ],
            },
            "SELECT warned" => Reply::Rows {
                result: ResultSet { columns: vec![Column::new("n")], rows: vec![vec![Value::Null]] },
                warnings: vec![Warning::new(Level::Warning, 1365, "Division by 0")],
            },
            "SELECT * FROM missing" => {
                Reply::Error(MysqlError::new(1146, "42S02", "Table 'shop.missing' doesn't exist"))
            }
            _ if sql.starts_with("INSERT") => {
                Reply::Ok { affected_rows: 3, last_insert_id: 42, info: "Records: 3".into(), warnings: vec![] }
            }
            _ if sql.starts_with("SET GLOBAL") => Reply::ok(),
            _ => match sql.strip_prefix("SELECT ").and_then(parse_literals) {
                Some(values) => Reply::rows(ResultSet {
                    columns: (0..values.len()).map(|i| Column::new(format!("c{i}"))).collect(),
                    rows: vec![values],
                }),
                None => Reply::Error(MysqlError::new(1064, "42000", format!("syntax error near '{sql}'"))),
            },
        }
    }

    async fn init_db(&mut self, db: &str) -> Result<(), MysqlError> {
        known_database(db)?;
        self.database = Some(db.to_string());
        Ok(())
    }

    fn current_database(&self) -> Option<String> {
        self.database.clone()
    }

    fn system_variable(&self, name: &str) -> Option<Value> {
        (name == "canopy_role").then(|| Value::Text("aggregator".into()))
    }

    async fn describe(&mut self, sql: &str) -> Result<Vec<Column>, MysqlError> {
        let count = sql.strip_prefix("SELECT ").and_then(parse_literals).map_or(0, |v| v.len());
        Ok((0..count).map(|i| Column::new(format!("c{i}"))).collect())
    }
}

/// One row with a column of every kind, a second of NULLs, a third with edge values.
pub fn kinds() -> ResultSet {
    let col = |name: &str, decl: Option<&str>| Column { name: name.into(), decl_type: decl.map(str::to_string) };
    ResultSet {
        columns: vec![
            col("id", Some("INTEGER")),
            col("price", Some("REAL")),
            col("name", Some("TEXT")),
            col("data", Some("BLOB")),
            col("expr", None),
            col("amount", Some("NUMERIC")),
            col("loose", Some("INTEGER")),
        ],
        rows: vec![
            vec![
                Value::Integer(1),
                Value::Real(9.5),
                Value::Text("apple".into()),
                Value::Blob(vec![0, 1, 255]),
                Value::Integer(1),
                Value::Integer(10),
                Value::Integer(5),
            ],
            vec![
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Real(2.5),
                Value::Null,
                Value::Text("five".into()),
            ],
            vec![
                Value::Integer(i64::MIN),
                Value::Real(1e300),
                Value::Text("päron 'q'".into()),
                Value::Blob(vec![]),
                Value::Null,
                Value::Integer(20),
                Value::Integer(6),
            ],
        ],
    }
}

/// About 10 MB of rows: more than socket buffers hold, so the server is still writing when a client hangs up.
pub fn big() -> ResultSet {
    let text = "x".repeat(200);
    ResultSet {
        columns: vec![Column::new("n"), Column::new("t")],
        rows: (0..50_000).map(|i| vec![Value::Integer(i), Value::Text(text.clone())]).collect(),
    }
}

/// Parses a comma-separated list of the literals `Value::to_mysql_literal` produces.
pub fn parse_literals(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    let mut rest = text.trim();
    loop {
        let (value, tail) = if let Some(tail) = rest.strip_prefix("NULL") {
            (Value::Null, tail)
        } else if let Some(tail) = rest.strip_prefix("X'") {
            let end = tail.find('\'')?;
            let hex = &tail[..end];
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            (Value::Blob(bytes), &tail[end + 1..])
        } else if let Some(tail) = rest.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = tail.char_indices().peekable();
            let end = loop {
                let (i, c) = chars.next()?;
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        chars.next();
                        out.push('\'');
                        continue;
                    }
                    break i + 1;
                }
                if c == '\\' {
                    out.push(chars.next()?.1);
                    continue;
                }
                out.push(c);
            };
            (Value::Text(out), &tail[end..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let number = rest[..end].trim();
            let value = match number.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                Err(_) if number.contains(['e', '.']) => Value::Real(number.parse().ok()?),
                Err(_) => return None,
            };
            (value, &rest[end..])
        };
        values.push(value);
        let tail = tail.trim_start();
        match tail.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None if tail.is_empty() => return Some(values),
            None => return None,
        }
    }
}

pub struct Harness {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
    pub closed: mpsc::UnboundedReceiver<u32>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    pub async fn start(limits: Limits) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let backend = Arc::new(TestBackend { seen: seen.clone(), closed: closed_tx });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, backend, limits, async move {
            let _ = shutdown_rx.await;
        }));
        Harness { port, seen, closed, shutdown: Some(shutdown_tx), server }
    }

    pub async fn start_default() -> Harness {
        Self::start(Limits::default()).await
    }

    pub fn opts(&self, user: &str, password: Option<&str>) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(password)
            .prefer_socket(false)
    }

    pub async fn connect(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts("root", None)).await.unwrap()
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the session of `connection_id` has been dropped by the server.
    pub async fn wait_closed(&mut self, connection_id: u32) {
        tokio::time::timeout(DEADLINE, async {
            while let Some(id) = self.closed.recv().await {
                if id == connection_id {
                    return;
                }
            }
            panic!("server gone");
        })
        .await
        .expect("session was not closed before the deadline");
    }

    /// Resolves the shutdown future and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.server).await.expect("serve did not return").unwrap()
    }
}

pub fn server_error(error: mysql_async::Error) -> mysql_async::ServerError {
    match error {
        mysql_async::Error::Server(e) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Capabilities the raw client announces unless a test removes some.
pub const RAW_CAPS: u32 = 0x0000_0200 // PROTOCOL_41
    | 0x0000_8000 // SECURE_CONNECTION
    | 0x0001_0000 // MULTI_STATEMENTS
    | 0x0002_0000 // MULTI_RESULTS
    | 0x0008_0000 // PLUGIN_AUTH
    | 0x0000_0008; // CONNECT_WITH_DB
pub const DEPRECATE_EOF: u32 = 0x0100_0000;

/// A hand-driven protocol client.
pub struct Raw {
    pub stream: TcpStream,
    pub connection_id: u32,
    pub salt: Vec<u8>,
}

impl Raw {
    /// Connects and reads the server's handshake.
    pub async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut raw = Raw { stream, connection_id: 0, salt: vec![] };
        let (seq, greeting) = raw.read().await.expect("handshake");
        assert_eq!(seq, 0);
        assert_eq!(greeting[0], 10, "protocol version");
        let version_end = greeting.iter().position(|&b| b == 0).unwrap();
        let rest = &greeting[version_end + 1..];
        raw.connection_id = u32::from_le_bytes(rest[..4].try_into().unwrap());
        let mut salt = rest[4..12].to_vec();
        // After part 1: filler, caps lo (2), charset, status (2), caps hi (2), auth len, reserved (10).
        let part2 = &rest[12 + 1 + 2 + 1 + 2 + 2 + 1 + 10..];
        salt.extend_from_slice(&part2[..12]);
        raw.salt = salt;
        raw
    }

    /// Connects and logs in; panics unless the server answers OK.
    pub async fn login(port: u16, caps: u32, user: &str, password: &str) -> Raw {
        let mut raw = Raw::connect(port).await;
        let auth = mysql_common::scramble::scramble_native(&raw.salt, password.as_bytes())
            .map(|s| s.to_vec())
            .unwrap_or_default();
        raw.write(1, &handshake_response(caps, user, &auth, None, "mysql_native_password")).await;
        let (_, reply) = raw.read().await.expect("auth reply");
        assert_eq!(reply[0], 0x00, "login failed: {reply:?}");
        raw
    }

    /// Reads one packet; None when the server closed the connection.
    pub async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(DEADLINE, async {
            let mut header = [0u8; 4];
            if self.stream.read_exact(&mut header).await.is_err() {
                return None;
            }
            let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let mut payload = vec![0; len];
            self.stream.read_exact(&mut payload).await.ok()?;
            Some((header[3], payload))
        })
        .await
        .expect("server neither answered nor closed before the deadline")
    }

    pub async fn write(&mut self, seq: u8, payload: &[u8]) {
        let len = (payload.len() as u32).to_le_bytes();
        let mut packet = vec![len[0], len[1], len[2], seq];
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet).await.unwrap();
    }

    /// Sends a command (sequence 0) and returns the first response packet.
    pub async fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        self.write(0, payload).await;
        self.read().await.expect("response").1
    }

    /// True once the server has closed the connection (reads hit EOF), after draining anything it sent first.
    pub async fn closed_by_server(&mut self) -> bool {
        tokio::time::timeout(DEADLINE, async {
            let mut sink = [0u8; 4096];
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

pub fn handshake_response(caps: u32, user: &str, auth: &[u8], db: Option<&str>, plugin: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&caps.to_le_bytes());
    out.extend_from_slice(&(16u32 << 20).to_le_bytes());
    out.push(45);
    out.extend_from_slice(&[0; 23]);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.push(auth.len() as u8);
    out.extend_from_slice(auth);
    if let Some(db) = db {
        out.extend_from_slice(db.as_bytes());
        out.push(0);
    } else if caps & 0x8 != 0 {
        out.push(0);
    }
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out
}

/// The error code and message of an ERR packet (with SQLSTATE).
pub fn parse_err(packet: &[u8]) -> (u16, String, String) {
    assert_eq!(packet[0], 0xFF, "not an error packet: {packet:?}");
    let code = u16::from_le_bytes([packet[1], packet[2]]);
    assert_eq!(packet[3], b'#');
    let state = String::from_utf8_lossy(&packet[4..9]).into_owned();
    let message = String::from_utf8_lossy(&packet[9..]).into_owned();
    (code, state, message)
}
