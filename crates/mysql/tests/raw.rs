//! The front end driven byte by byte: what a client library never sends (garbage, oversized packets, unknown
//! commands), protocol variants mysql_async does not use (no CLIENT_DEPRECATE_EOF, plugin switch, COM_INIT_DB), and
//! clients that hang up mid-result. Each fault test also checks that a well-behaved connection is unaffected.

mod common;

use canopy_mysql::Limits;
use common::{DEPRECATE_EOF, Harness, RAW_CAPS, Raw, handshake_response, parse_err};

const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_EXECUTE: u8 = 0x17;

fn query(sql: &str) -> Vec<u8> {
    let mut out = vec![COM_QUERY];
    out.extend_from_slice(sql.as_bytes());
    out
}

#[tokio::test]
async fn garbage_and_oversized_packets_close_only_the_offending_connection() {
    // History: a healthy client connects; then one client sends HTTP before reading anything, one sends garbage after
    // the handshake, one declares a 16 MiB packet before authenticating, one after. Each is closed (the oversized ones
    // after error 1153); the healthy client keeps working throughout.
    let harness = Harness::start(Limits { max_packet_bytes: 1 << 20, ..Limits::default() }).await;
    let mut healthy = harness.connect().await;

    let mut http = tokio::net::TcpStream::connect(("127.0.0.1", harness.port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut http = Raw { stream: http, connection_id: 0, salt: vec![] };
    assert!(http.closed_by_server().await);

    let mut garbage = Raw::connect(harness.port).await;
    tokio::io::AsyncWriteExt::write_all(&mut garbage.stream, &[0x03, 0x00, 0x00, 0x01, 0xDE, 0xAD, 0xBE])
        .await
        .unwrap();
    assert!(garbage.closed_by_server().await);

    let mut oversized = Raw::connect(harness.port).await;
    tokio::io::AsyncWriteExt::write_all(&mut oversized.stream, &[0xFF, 0xFF, 0xFF, 0x01]).await.unwrap();
    let (_, reply) = oversized.read().await.expect("error before close");
    assert_eq!(parse_err(&reply).0, 1153);
    assert!(oversized.closed_by_server().await);

    let mut oversized_command = Raw::login(harness.port, RAW_CAPS | DEPRECATE_EOF, "root", "").await;
    tokio::io::AsyncWriteExt::write_all(&mut oversized_command.stream, &[0xFF, 0xFF, 0xFF, 0x00]).await.unwrap();
    let (_, reply) = oversized_command.read().await.expect("error before close");
    let (code, state, message) = parse_err(&reply);
    assert_eq!(
        (code, state.as_str(), message.as_str()),
        (1153, "08S01", "Got a packet bigger than 'max_allowed_packet' bytes")
    );
    assert!(oversized_command.closed_by_server().await);

    let mut short_command = Raw::login(harness.port, RAW_CAPS | DEPRECATE_EOF, "root", "").await;
    // A COM_STMT_EXECUTE too short to hold a statement id is answered, not fatal.
    let reply = short_command.command(&[COM_STMT_EXECUTE, 1]).await;
    assert_eq!(parse_err(&reply).0, 1210);
    // An empty packet is not a command: the connection is closed.
    short_command.write(0, &[]).await;
    assert!(short_command.closed_by_server().await);

    use mysql_async::prelude::Queryable;
    let one: Option<i64> = healthy.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test]
async fn a_client_hanging_up_mid_result_ends_only_its_own_session() {
    // History: a raw client asks for a ~10 MB result, reads one packet and disconnects. Its session must be dropped
    // (the server notices the broken pipe), and another client is served meanwhile and afterwards.
    let mut harness = Harness::start_default().await;
    let mut other = harness.connect().await;
    let mut quitter = Raw::login(harness.port, RAW_CAPS | DEPRECATE_EOF, "root", "").await;
    let first = quitter.command(&query("SELECT big")).await;
    assert_eq!(first, vec![2], "column count packet");
    let quitter_id = quitter.connection_id;
    drop(quitter);
    harness.wait_closed(quitter_id).await;
    use mysql_async::prelude::Queryable;
    let rows: Vec<(i64, String)> = other.query("SELECT big").await.unwrap();
    assert_eq!(rows.len(), 50_000);
    assert_eq!(rows[49_999].0, 49_999);
}

#[tokio::test]
async fn result_sets_without_deprecate_eof_use_eof_packets() {
    let harness = Harness::start_default().await;
    let mut raw = Raw::login(harness.port, RAW_CAPS, "root", "").await;
    let count = raw.command(&query("SELECT 1, 'a'")).await;
    assert_eq!(count, vec![2]);
    let mut packets = Vec::new();
    for _ in 0..5 {
        packets.push(raw.read().await.expect("packet").1);
    }
    // Two column definitions, EOF, the row, EOF.
    assert_eq!(&packets[0][..4], b"\x03def");
    assert_eq!(packets[2], vec![0xFE, 0, 0, 0x02, 0], "EOF with SERVER_STATUS_AUTOCOMMIT");
    assert_eq!(packets[3], b"\x011\x01a");
    assert_eq!(packets[4], vec![0xFE, 0, 0, 0x02, 0]);

    // With CLIENT_DEPRECATE_EOF there is no middle EOF and the end is an OK packet with a 0xFE header.
    let mut modern = Raw::login(harness.port, RAW_CAPS | DEPRECATE_EOF, "root", "").await;
    assert_eq!(modern.command(&query("SELECT 1")).await, vec![1]);
    let _definition = modern.read().await.unwrap();
    assert_eq!(modern.read().await.unwrap().1, b"\x011");
    assert_eq!(modern.read().await.unwrap().1, vec![0xFE, 0, 0, 0x02, 0, 0, 0]);
}

/// History: a client answers the greeting with caching_sha2_password's scramble for an account that has the
/// SHA-256 digest. Property: fast authentication: "fast auth success" (0x01 0x03), then OK, in sequence.
#[tokio::test]
async fn caching_sha2_password_fast_authentication() {
    let harness = Harness::start_default().await;
    let mut raw = Raw::connect(harness.port).await;
    let scramble = mysql_common::scramble::scramble_sha256(&raw.salt, b"secret").unwrap();
    raw.write(1, &handshake_response(RAW_CAPS, "alice", &scramble, None, "caching_sha2_password")).await;
    assert_eq!(raw.read().await.expect("fast auth result"), (2, vec![0x01, 0x03]));
    let (seq, ok) = raw.read().await.expect("ok");
    assert_eq!((seq, ok[0]), (3, 0x00));
    assert_eq!(raw.command(&[COM_PING]).await[0], 0x00);

    let mut wrong = Raw::connect(harness.port).await;
    let scramble = mysql_common::scramble::scramble_sha256(&wrong.salt, b"guess").unwrap();
    wrong.write(1, &handshake_response(RAW_CAPS, "alice", &scramble, None, "caching_sha2_password")).await;
    let (seq, err) = wrong.read().await.expect("error");
    assert_eq!((seq, parse_err(&err).0), (2, 1045), "a wrong password is refused, never sent to full authentication");
}

/// History: a client answers with a plugin the account cannot use: caching_sha2_password for an account identified
/// WITH mysql_native_password, a plugin Canopy does not serve, or (as libmariadb does when its configured plugin is
/// not the greeting's) an empty mysql_native_password response, whatever the account's plugin. Property: an AuthSwitchRequest to the account's own
/// plugin with the connection's salt; that plugin's scramble then logs in (after caching_sha2_password's fast-auth
/// success).
#[tokio::test]
async fn other_plugins_are_switched_to_the_account_s_plugin() {
    let harness = Harness::start_default().await;
    for (user, plugin, to) in [
        ("nat", "caching_sha2_password", "mysql_native_password"),
        ("alice", "sha256_password", "caching_sha2_password"),
        ("alice", "mysql_native_password", "caching_sha2_password"),
        ("nat", "mysql_native_password", "mysql_native_password"),
    ] {
        let mut raw = Raw::connect(harness.port).await;
        let first: &[u8] = if plugin == "mysql_native_password" { &[] } else { &[1; 32] };
        raw.write(1, &handshake_response(RAW_CAPS, user, first, None, plugin)).await;
        let (seq, switch) = raw.read().await.expect("auth switch");
        assert_eq!(seq, 2);
        let name_end = 1 + to.len();
        assert_eq!((switch[0], &switch[1..name_end], switch[name_end]), (0xFE, to.as_bytes(), 0), "{user} {plugin}");
        let salt = &switch[name_end + 1..name_end + 21];
        assert_eq!(salt, &raw.salt[..], "the switch carries the connection's salt");
        let mut seq = 3;
        if to == "mysql_native_password" {
            raw.write(seq, &mysql_common::scramble::scramble_native(salt, b"secret").unwrap()).await;
        } else {
            raw.write(seq, &mysql_common::scramble::scramble_sha256(salt, b"secret").unwrap()).await;
            seq += 1;
            assert_eq!(raw.read().await.expect("fast auth result"), (seq, vec![0x01, 0x03]));
        }
        let (ok_seq, ok) = raw.read().await.expect("ok");
        assert_eq!((ok_seq, ok[0]), (seq + 1, 0x00), "{user} with {plugin}");
        assert_eq!(raw.command(&[COM_PING]).await[0], 0x00);
    }
}

#[tokio::test]
async fn init_db_and_unknown_commands() {
    let harness = Harness::start_default().await;
    let mut raw = Raw::login(harness.port, RAW_CAPS | DEPRECATE_EOF, "root", "").await;
    let mut init = vec![COM_INIT_DB];
    init.extend_from_slice(b"shop");
    assert_eq!(raw.command(&init).await[0], 0x00);
    let mut bad = vec![COM_INIT_DB];
    bad.extend_from_slice(b"nowhere");
    assert_eq!(parse_err(&raw.command(&bad).await).0, 1049);
    let (code, state, _) = parse_err(&raw.command(&[0x0B]).await);
    assert_eq!((code, state.as_str()), (1047, "08S01"));
    let mut execute_unknown = vec![COM_STMT_EXECUTE];
    execute_unknown.extend_from_slice(&[99, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(parse_err(&raw.command(&execute_unknown).await).0, 1243);
    // The connection survives all of that and the database stuck.
    assert_eq!(raw.command(&query("SELECT DATABASE()")).await, vec![1]);
    let _definition = raw.read().await.unwrap();
    assert_eq!(raw.read().await.unwrap().1, b"\x04shop");
}

#[tokio::test]
async fn multi_statements_need_the_capability() {
    let harness = Harness::start_default().await;
    let without_multi = RAW_CAPS & !0x0001_0000;
    let mut raw = Raw::login(harness.port, without_multi | DEPRECATE_EOF, "root", "").await;
    let (code, _, _) = parse_err(&raw.command(&query("SELECT 1; SELECT 2")).await);
    assert_eq!(code, 1064);
    assert!(harness.seen().is_empty());
    // COM_SET_OPTION turns them on for this connection.
    assert_eq!(raw.command(&[0x1B, 0, 0]).await[0], 0xFE);
    assert_eq!(raw.command(&query("SELECT 1; SELECT 2")).await, vec![1]);
}
