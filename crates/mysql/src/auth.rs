//! Passwords as MySQL's two current authentication plugins check them, on the server side:
//! - `mysql_native_password`: the client sends `SHA1(p) XOR SHA1(salt + SHA1(SHA1(p)))`; the server keeps
//!   `SHA1(SHA1(p))` (MySQL's `*HEX` authentication string).
//! - `caching_sha2_password`, fast authentication: the client sends `SHA256(p) XOR SHA256(SHA256(SHA256(p)) + salt)`;
//!   the server keeps `SHA256(SHA256(p))`, the entry MySQL holds in its in-memory cache. Canopy keeps it with the
//!   account (it is no easier to log in with than the native hash), so fast authentication always has its entry and
//!   the "full authentication" exchange (the clear password over TLS or RSA) is never needed. Canopy offers neither
//!   TLS nor RSA key exchange: an account without the SHA-256 digest (identified WITH mysql_native_password) gets an
//!   AuthSwitchRequest to `mysql_native_password` instead, which every client follows.
//!
//! Neither the stored values nor the wire responses reveal the password; this module never stores one.

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// What the server knows of an account's password: enough to check a client's response, not to recover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The password is empty: only an empty response passes, with either plugin.
    empty: bool,
    /// `SHA1(SHA1(password))`, when the account may use `mysql_native_password`.
    native: Option<[u8; 20]>,
    /// `SHA256(SHA256(password))`, when the account may use `caching_sha2_password`.
    sha2: Option<[u8; 32]>,
    /// The account's own plugin: what a client is switched to when its response cannot be checked.
    plugin: Plugin,
}

impl Credentials {
    /// A password known in clear text (the node's root account, from its configuration): both plugins.
    pub fn from_password(password: &str) -> Credentials {
        if password.is_empty() {
            return Credentials { empty: true, native: None, sha2: None, plugin: Plugin::CachingSha2 };
        }
        let native = Sha1::digest(Sha1::digest(password.as_bytes())).into();
        Credentials {
            empty: false,
            native: Some(native),
            sha2: Some(sha2_stage2(password)),
            plugin: Plugin::CachingSha2,
        }
    }

    /// Credentials from what an account stores (`native_authentication_string`, and `sha2_digest` for a
    /// caching_sha2_password account, `None` for a mysql_native_password one); `None` when a stored value is
    /// malformed, which the caller treats as an account nobody can log in to.
    pub fn from_stored(native: &str, sha2: Option<&str>) -> Option<Credentials> {
        let plugin = if sha2.is_some() { Plugin::CachingSha2 } else { Plugin::Native };
        if native.is_empty() {
            return Some(Credentials { empty: true, native: None, sha2: None, plugin });
        }
        let native = native.strip_prefix('*').and_then(unhex::<20>)?;
        let sha2 = match sha2 {
            Some(hex) => Some(unhex::<32>(hex)?),
            None => None,
        };
        Some(Credentials { empty: false, native: Some(native), sha2, plugin })
    }
}

/// MySQL's `mysql_native_password` authentication string: `*` and the upper-case hex of SHA1(SHA1(password)), or
/// empty for an empty password (what `SELECT authentication_string FROM mysql.user` shows in MySQL).
pub fn native_authentication_string(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    format!("*{}", hex(&Sha1::digest(Sha1::digest(password.as_bytes()))))
}

/// The hex of SHA256(SHA256(password)) (empty for an empty password): caching_sha2_password's fast-auth entry.
pub fn sha2_digest(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    hex(&sha2_stage2(password))
}

fn sha2_stage2(password: &str) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password.as_bytes())).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A plugin the server can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plugin {
    Native,
    CachingSha2,
}

impl Plugin {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Plugin::Native => NATIVE_PASSWORD,
            Plugin::CachingSha2 => CACHING_SHA2_PASSWORD,
        }
    }
}

/// What the server answers to one authentication response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The password is right. `fast_auth`: caching_sha2_password's "fast auth success" (0x01 0x03) precedes the OK.
    Accepted {
        fast_auth: bool,
    },
    Rejected,
    /// The response's plugin cannot be checked for this account: ask the client to answer with this one.
    Switch(Plugin),
}

/// Checks `response`, made with the plugin the client named (`None`: a client without plugin support, which
/// answers as `mysql_native_password`) and `salt`, against an account's credentials (`None`: no such user).
pub(crate) fn verify(credentials: Option<&Credentials>, plugin: Option<&str>, salt: &[u8], response: &[u8]) -> Verdict {
    let own = credentials.map_or(Plugin::Native, |c| c.plugin);
    let plugin = match plugin {
        None | Some(NATIVE_PASSWORD) => Plugin::Native,
        Some(CACHING_SHA2_PASSWORD) => Plugin::CachingSha2,
        Some(_) => return Verdict::Switch(own),
    };
    let Some(credentials) = credentials else { return Verdict::Rejected };
    // libmysql's caching_sha2_password sends one zero byte for an empty password; MySQL reads both as empty.
    let empty_response = response.is_empty() || response == [0];
    if credentials.empty {
        return if empty_response { Verdict::Accepted { fast_auth: false } } else { Verdict::Rejected };
    }
    if empty_response {
        // A client whose configured plugin is not the one the greeting offered discards the greeting's salt, sends
        // nothing and waits for an AuthSwitchRequest carrying one (libmariadb does, as MySQL's server expects);
        // after that switch an empty response is refused (`handshake` allows one switch): no password was given.
        return Verdict::Switch(credentials.plugin);
    }
    match plugin {
        Plugin::Native => match &credentials.native {
            Some(stage2) => accept_if(native_matches(stage2, salt, response), false),
            None => Verdict::Switch(Plugin::CachingSha2),
        },
        Plugin::CachingSha2 => match &credentials.sha2 {
            Some(stage2) => accept_if(sha2_matches(stage2, salt, response), true),
            None => Verdict::Switch(Plugin::Native),
        },
    }
}

fn accept_if(matches: bool, fast_auth: bool) -> Verdict {
    if matches { Verdict::Accepted { fast_auth } } else { Verdict::Rejected }
}

/// `response XOR SHA1(salt + stage2)` is SHA1(p), whose SHA1 must be `stage2`.
fn native_matches(stage2: &[u8; 20], salt: &[u8], response: &[u8]) -> bool {
    if response.len() != 20 {
        return false;
    }
    let mut mask = Sha1::new();
    mask.update(salt);
    mask.update(stage2);
    let stage1: Vec<u8> = mask.finalize().iter().zip(response).map(|(m, r)| m ^ r).collect();
    constant_time_eq(&Sha1::digest(&stage1), stage2)
}

/// `response XOR SHA256(stage2 + salt)` is SHA256(p), whose SHA256 must be `stage2`.
fn sha2_matches(stage2: &[u8; 32], salt: &[u8], response: &[u8]) -> bool {
    if response.len() != 32 {
        return false;
    }
    let mut mask = Sha256::new();
    mask.update(stage2);
    mask.update(salt);
    let stage1: Vec<u8> = mask.finalize().iter().zip(response).map(|(m, r)| m ^ r).collect();
    constant_time_eq(&Sha256::digest(&stage1), stage2)
}

/// Compares without an early exit, so response timing does not reveal how many leading bytes were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::scramble::{scramble_native, scramble_sha256};

    const SALT: &[u8; 20] = b"abcdefghij0123456789";

    fn stored(password: &str) -> Credentials {
        let native = native_authentication_string(password);
        Credentials::from_stored(&native, Some(&sha2_digest(password))).unwrap()
    }

    #[test]
    fn mysql_s_own_hash_of_a_known_password() {
        // MySQL: SELECT PASSWORD('password') = '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'.
        assert_eq!(native_authentication_string("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert_eq!(native_authentication_string(""), "");
    }

    /// The responses a real client library computes pass, and nothing else does, with either plugin.
    #[test]
    fn client_scrambles_are_verified_for_both_plugins() {
        for credentials in [stored("s3cret"), Credentials::from_password("s3cret")] {
            let native = scramble_native(SALT, b"s3cret").unwrap();
            let sha2 = scramble_sha256(SALT, b"s3cret").unwrap();
            let check = |plugin, response: &[u8]| verify(Some(&credentials), Some(plugin), SALT, response);
            assert_eq!(check(NATIVE_PASSWORD, &native), Verdict::Accepted { fast_auth: false });
            assert_eq!(check(CACHING_SHA2_PASSWORD, &sha2), Verdict::Accepted { fast_auth: true });
            assert_eq!(check(NATIVE_PASSWORD, &scramble_native(SALT, b"wrong").unwrap()), Verdict::Rejected);
            assert_eq!(check(CACHING_SHA2_PASSWORD, &scramble_sha256(SALT, b"wrong").unwrap()), Verdict::Rejected);
            assert_eq!(check(CACHING_SHA2_PASSWORD, &native), Verdict::Rejected, "wrong length");
            assert_eq!(check(CACHING_SHA2_PASSWORD, &[]), Verdict::Switch(Plugin::CachingSha2), "waits for a salt");
            assert_eq!(check(NATIVE_PASSWORD, &[]), Verdict::Switch(Plugin::CachingSha2), "waits for a salt");
            assert_eq!(check("sha256_password", &sha2), Verdict::Switch(Plugin::CachingSha2));
            let other_salt = scramble_sha256(b"ZZZZZZZZZZ0123456789", b"s3cret").unwrap();
            assert_eq!(check(CACHING_SHA2_PASSWORD, &other_salt), Verdict::Rejected);
        }
    }

    #[test]
    fn a_native_only_account_switches_sha2_clients_to_native() {
        let native_only = Credentials::from_stored(&native_authentication_string("p"), None).unwrap();
        let sha2 = scramble_sha256(SALT, b"p").unwrap();
        assert_eq!(
            verify(Some(&native_only), Some(CACHING_SHA2_PASSWORD), SALT, &sha2),
            Verdict::Switch(Plugin::Native)
        );
        assert_eq!(verify(Some(&native_only), Some(NATIVE_PASSWORD), SALT, &[]), Verdict::Switch(Plugin::Native));
        assert_eq!(verify(None, Some("dialog"), SALT, &[]), Verdict::Switch(Plugin::Native), "unknown user");
    }

    #[test]
    fn empty_passwords_accept_only_empty_responses() {
        let empty = Credentials::from_password("");
        assert_eq!(stored(""), empty);
        assert_eq!(Credentials::from_stored("", None).map(|c| c.empty), Some(true));
        for plugin in [NATIVE_PASSWORD, CACHING_SHA2_PASSWORD] {
            assert_eq!(verify(Some(&empty), Some(plugin), SALT, &[]), Verdict::Accepted { fast_auth: false });
            assert_eq!(verify(Some(&empty), Some(plugin), SALT, &[0]), Verdict::Accepted { fast_auth: false });
            assert_eq!(verify(Some(&empty), Some(plugin), SALT, &[1; 20]), Verdict::Rejected);
        }
        assert_eq!(verify(None, None, SALT, &[]), Verdict::Rejected, "unknown user");
    }

    #[test]
    fn malformed_stored_values_are_refused() {
        assert_eq!(Credentials::from_stored("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", None), None, "no '*'");
        assert_eq!(Credentials::from_stored("*2470", None), None);
        assert_eq!(Credentials::from_stored(&native_authentication_string("p"), Some("xyz")), None);
    }
}
