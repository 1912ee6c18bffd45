//! Connection phase: the v10 handshake the server sends first (offering `caching_sha2_password`, as MySQL 8 does),
//! parsing the client's HandshakeResponse41, switching a client whose plugin the account cannot use (`auth::verify`
//! decides), and answering caching_sha2_password's fast authentication. It does not open the backend session (the
//! command loop does that once authentication succeeds) and does not do TLS: CLIENT_SSL is never advertised, and a
//! client that asks for it anyway is refused.

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{self, CACHING_SHA2_PASSWORD, Plugin, Verdict};
use crate::packet::Framed;
use crate::wire::{Malformed, Reader, put_null_terminated, put_u16, put_u32};
use crate::{Backend, MysqlError};

/// caching_sha2_password's "fast auth success" (an AuthMoreData packet), sent before the OK.
const FAST_AUTH_SUCCESS: [u8; 2] = [0x01, 0x03];
/// utf8mb4_general_ci, the server's default collation in the handshake.
const SERVER_COLLATION: u8 = 45;
pub(crate) const SALT_LEN: usize = 20;

/// What the server offers. The client's own flags are intersected with these.
pub(crate) fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// A fresh salt: printable ASCII without `$`, as MySQL generates it, because some clients treat the salt as a
/// NUL-terminated string.
pub(crate) fn new_salt() -> [u8; SALT_LEN] {
    let mut rng = rand::rng();
    let mut salt = [0u8; SALT_LEN];
    for byte in &mut salt {
        *byte = loop {
            let c = rng.random_range(0x21u8..=0x7E);
            if c != b'$' {
                break c;
            }
        };
    }
    salt
}

/// The Protocol::HandshakeV10 payload.
pub(crate) fn initial_handshake(
    server_version: &str,
    connection_id: u32,
    salt: &[u8; SALT_LEN],
    status: StatusFlags,
) -> Vec<u8> {
    let caps = server_capabilities().bits();
    let mut out = vec![10];
    put_null_terminated(&mut out, server_version.replace('\0', "").as_bytes());
    put_u32(&mut out, connection_id);
    out.extend_from_slice(&salt[..8]);
    out.push(0); // filler
    put_u16(&mut out, caps as u16);
    out.push(SERVER_COLLATION);
    put_u16(&mut out, status.bits());
    put_u16(&mut out, (caps >> 16) as u16);
    out.push(SALT_LEN as u8 + 1); // auth data length, including the trailing NUL
    out.extend_from_slice(&[0; 10]); // reserved
    put_null_terminated(&mut out, &salt[8..]);
    put_null_terminated(&mut out, CACHING_SHA2_PASSWORD.as_bytes());
    out
}

/// The fields of a HandshakeResponse41 the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeResponse {
    pub capabilities: CapabilityFlags,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
}

/// Why a handshake response is refused before any password check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("client requires protocol 4.1")]
    Protocol320,
    #[error("client asked for TLS, which is not offered")]
    SslRequested,
}

pub(crate) fn parse_handshake_response(payload: &[u8]) -> Result<HandshakeResponse, ResponseError> {
    let mut r = Reader::new(payload);
    let client = CapabilityFlags::from_bits_truncate(r.u32()?);
    if !client.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(ResponseError::Protocol320);
    }
    if client.contains(CapabilityFlags::CLIENT_SSL) {
        return Err(ResponseError::SslRequested);
    }
    let capabilities = client & server_capabilities();
    let _max_packet = r.u32()?;
    let _collation = r.u8()?;
    r.take(23)?; // reserved
    let user = String::from_utf8_lossy(r.null_terminated()?).into_owned();
    let auth_response = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
        r.lenenc_bytes()?
    } else if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let len = usize::from(r.u8()?);
        r.take(len)?
    } else {
        r.null_terminated()?
    }
    .to_vec();
    // Old clients stop after the fields they use, so trailing fields are optional even when flagged.
    let mut optional_string = |flag: CapabilityFlags| -> Result<Option<String>, Malformed> {
        if !capabilities.contains(flag) || r.is_empty() {
            return Ok(None);
        }
        let bytes = r.null_terminated()?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    };
    let database = optional_string(CapabilityFlags::CLIENT_CONNECT_WITH_DB)?.filter(|d| !d.is_empty());
    let auth_plugin = optional_string(CapabilityFlags::CLIENT_PLUGIN_AUTH)?;
    // Connection attributes (CLIENT_CONNECT_ATTRS) follow; the server has no use for them.
    Ok(HandshakeResponse { capabilities, user, auth_response, database, auth_plugin })
}

/// What COM_CHANGE_USER carries: the new user, its scramble (for the connection's salt), the database, the plugin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
}

/// The body of COM_CHANGE_USER (after the command byte), read with the capabilities agreed at connect time.
pub(crate) fn parse_change_user(body: &[u8], capabilities: CapabilityFlags) -> Result<ChangeUser, Malformed> {
    let mut r = Reader::new(body);
    let user = String::from_utf8_lossy(r.null_terminated()?).into_owned();
    let auth_response = if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let len = usize::from(r.u8()?);
        r.take(len)?
    } else {
        r.null_terminated()?
    }
    .to_vec();
    let database = if r.is_empty() { None } else { Some(String::from_utf8_lossy(r.null_terminated()?).into_owned()) };
    // The character set (2 bytes) comes next, then the plugin name; connection attributes follow, unused.
    let mut auth_plugin = None;
    if !r.is_empty() {
        r.take(2)?;
        if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
            auth_plugin = Some(String::from_utf8_lossy(r.null_terminated()?).into_owned());
        }
    }
    Ok(ChangeUser { user, auth_response, database: database.filter(|d| !d.is_empty()), auth_plugin })
}

/// Re-authentication for COM_CHANGE_USER against the connection's salt (clients scramble with the one from the
/// initial handshake), switching plugins as at connect time. `Ok(false)` when the password does not match.
pub(crate) async fn authenticate_change<S, B>(
    framed: &mut Framed<S>,
    backend: &B,
    salt: &[u8; SALT_LEN],
    change: &mut ChangeUser,
) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let credentials = backend.credentials(&change.user);
    let (accepted, response) =
        exchange(framed, credentials.as_ref(), salt, change.auth_plugin.clone(), change.auth_response.clone(), true)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    change.auth_response = response;
    Ok(accepted)
}

/// Verifies a response and follows the plugin switches `auth::verify` asks for (at most one: a client that needs a
/// second is refused), sending caching_sha2_password's fast-auth success when it applies. Returns whether the
/// client proved the password, and its last response (whether it used a password, for the error text).
async fn exchange<S>(
    framed: &mut Framed<S>,
    credentials: Option<&auth::Credentials>,
    salt: &[u8; SALT_LEN],
    mut plugin: Option<String>,
    mut response: Vec<u8>,
    can_switch: bool,
) -> Result<(bool, Vec<u8>), crate::packet::ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut switched = false;
    loop {
        match auth::verify(credentials, plugin.as_deref(), salt, &response) {
            Verdict::Accepted { fast_auth } => {
                if fast_auth {
                    framed.write(&FAST_AUTH_SUCCESS).await?;
                }
                return Ok((true, response));
            }
            Verdict::Rejected => return Ok((false, response)),
            Verdict::Switch(_) if switched || !can_switch => return Ok((false, response)),
            Verdict::Switch(to) => {
                framed.write(&auth_switch_request(to, salt)).await?;
                framed.flush().await?;
                response = framed.read().await?;
                plugin = Some(to.name().to_string());
                switched = true;
            }
        }
    }
}

/// The AuthSwitchRequest payload asking the client to answer with `plugin` for `salt`.
fn auth_switch_request(plugin: Plugin, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut out = vec![0xFE];
    put_null_terminated(&mut out, plugin.name().as_bytes());
    put_null_terminated(&mut out, salt);
    out
}

/// How the connection phase ended when it did not produce an authenticated client.
#[derive(Debug)]
pub(crate) enum HandshakeFailure {
    /// Tell the client this error, then close.
    Refuse(MysqlError),
    /// The connection is unusable (closed, garbage, I/O error): just close.
    Drop(String),
}

/// Runs the connection phase after the initial handshake was sent: reads the response, switches plugins if needed,
/// and checks the password. On success the caller sends the final OK (after opening the session).
pub(crate) async fn authenticate<S, B>(
    framed: &mut Framed<S>,
    backend: &B,
    salt: &[u8; SALT_LEN],
    host: &str,
) -> Result<HandshakeResponse, HandshakeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let payload = framed.read().await.map_err(|e| read_failure(&e))?;
    let mut response = match parse_handshake_response(&payload) {
        Ok(r) => r,
        Err(e @ ResponseError::Malformed(_)) => return Err(HandshakeFailure::Drop(e.to_string())),
        Err(e) => return Err(HandshakeFailure::Refuse(MysqlError::new(1043, "08S01", format!("Bad handshake: {e}")))),
    };
    let credentials = backend.credentials(&response.user);
    let can_switch = response.capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH);
    let (accepted, last) = exchange(
        framed,
        credentials.as_ref(),
        salt,
        response.auth_plugin.clone(),
        std::mem::take(&mut response.auth_response),
        can_switch,
    )
    .await
    .map_err(|e| match e {
        crate::packet::ReadError::TooLarge { .. } => read_failure(&e),
        other => HandshakeFailure::Drop(other.to_string()),
    })?;
    response.auth_response = last;
    if accepted {
        Ok(response)
    } else {
        Err(HandshakeFailure::Refuse(MysqlError::access_denied(
            &response.user,
            host,
            !response.auth_response.is_empty(),
        )))
    }
}

fn read_failure(error: &crate::packet::ReadError) -> HandshakeFailure {
    match error {
        crate::packet::ReadError::TooLarge { .. } => HandshakeFailure::Refuse(MysqlError::packet_too_large()),
        other => HandshakeFailure::Drop(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::put_lenenc_bytes;

    fn response_payload(caps: CapabilityFlags, user: &str, auth: &[u8], db: Option<&str>, plugin: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, caps.bits());
        put_u32(&mut out, 1 << 24);
        out.push(45);
        out.extend_from_slice(&[0; 23]);
        put_null_terminated(&mut out, user.as_bytes());
        put_lenenc_bytes(&mut out, auth);
        if let Some(db) = db {
            put_null_terminated(&mut out, db.as_bytes());
        }
        put_null_terminated(&mut out, plugin.as_bytes());
        out
    }

    #[test]
    fn parses_a_full_response() {
        let caps = server_capabilities();
        let payload = response_payload(caps, "alice", &[1, 2, 3], Some("shop"), "caching_sha2_password");
        let parsed = parse_handshake_response(&payload).unwrap();
        assert_eq!(parsed.user, "alice");
        assert_eq!(parsed.auth_response, vec![1, 2, 3]);
        assert_eq!(parsed.database.as_deref(), Some("shop"));
        assert_eq!(parsed.auth_plugin.as_deref(), Some("caching_sha2_password"));
    }

    #[test]
    fn refuses_ssl_and_pre_41_clients_and_truncated_responses() {
        let ssl = response_payload(server_capabilities() | CapabilityFlags::CLIENT_SSL, "u", &[], None, "x");
        assert_eq!(parse_handshake_response(&ssl), Err(ResponseError::SslRequested));
        let old = response_payload(CapabilityFlags::CLIENT_LONG_PASSWORD, "u", &[], None, "x");
        assert_eq!(parse_handshake_response(&old), Err(ResponseError::Protocol320));
        let full = response_payload(server_capabilities(), "alice", &[9; 20], Some("db"), auth::NATIVE_PASSWORD);
        for len in 0..40 {
            assert!(parse_handshake_response(&full[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn salts_are_printable_and_differ() {
        let (a, b) = (new_salt(), new_salt());
        assert!(a.iter().all(|c| (0x21..=0x7E).contains(c) && *c != b'$'));
        assert_ne!(a, b);
    }
}
