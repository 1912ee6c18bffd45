//! Authentication of every RPC connection, TCP and local socket alike, before any request frame.
//!
//! The nodes of a cluster share one secret (`ClusterSecret`, 32 random bytes made at BOOTSTRAP and handed to each
//! leaf by ADD LEAF). A connection starts with a challenge-response in both directions:
//! 1. the server sends `Hello::Challenge` (its nonce, its name, whether it holds a secret), or `Hello::Busy` when it
//!    is at its connection limit (then it closes; the client reports [`RpcError::Busy`], never a refusal);
//! 2. the client answers its own nonce, its name and `HMAC-SHA256(secret, "client" || both nonces || both names)`;
//! 3. the server checks it and answers `Verdict::Accepted` with its own proof (`"server"` instead of `"client"`),
//!    which the client checks in turn, so neither side trusts a peer that does not hold the secret.
//!
//! A node without a secret (unconfigured, before ADD LEAF) answers `Verdict::Unkeyed`: such a connection carries
//! only what joining needs (the server hands its frames to `Handler::handle_unauthenticated`; the client sends
//! nothing but `JoinCluster` over it and never pools it). Every frame before authentication is at most
//! [`UNAUTHENTICATED_FRAME_BYTES_MAX`], so a stranger cannot make a node allocate.

use std::sync::RwLock;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::RpcError;

/// Bytes of a cluster secret.
pub const SECRET_BYTES: usize = 32;
/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;
/// Frames exchanged before a connection is authenticated (the handshake itself, and `JoinCluster` on an unkeyed
/// node) are refused beyond this size.
pub const UNAUTHENTICATED_FRAME_BYTES_MAX: u32 = 1024;
/// A peer must finish the handshake within this time, or the server closes the connection.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

type Proof = [u8; 32];

/// The secret shared by the nodes of one cluster. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecret([u8; SECRET_BYTES]);

impl ClusterSecret {
    /// A new random secret (BOOTSTRAP AGGREGATOR).
    pub fn generate() -> ClusterSecret {
        ClusterSecret(rand::random())
    }

    /// The secret stored in `bytes`, if they have the right length.
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterSecret> {
        bytes.try_into().ok().map(ClusterSecret)
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    fn proof(
        &self,
        side: Side,
        server_nonce: &[u8; NONCE_BYTES],
        client_nonce: &[u8; NONCE_BYTES],
        names: [&str; 2],
    ) -> Proof {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(side.label());
        mac.update(server_nonce);
        mac.update(client_nonce);
        for name in names {
            // Length-prefixed, so two names cannot be re-split into two others.
            mac.update(&(name.len() as u32).to_be_bytes());
            mac.update(name.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Compares two byte strings in time independent of where they differ (proofs, join tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a node presents on its connections: a name (covered by the proofs, shown in logs) and the cluster secret,
/// once it has one. Shared by the node's server and clients; the secret changes when the node joins or leaves.
pub struct Credentials {
    name: String,
    secret: RwLock<Option<ClusterSecret>>,
}

impl Credentials {
    pub fn new(name: impl Into<String>, secret: Option<ClusterSecret>) -> Credentials {
        Credentials { name: name.into(), secret: RwLock::new(secret) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn secret(&self) -> Option<ClusterSecret> {
        self.secret.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn set_secret(&self, secret: Option<ClusterSecret>) {
        *self.secret.write().unwrap_or_else(|p| p.into_inner()) = secret;
    }
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Client => b"canopy-rpc client",
            Side::Server => b"canopy-rpc server",
        }
    }
}

/// The server's first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Hello {
    Challenge {
        nonce: [u8; NONCE_BYTES],
        name: String,
        keyed: bool,
    },
    /// The server is at its connection limit and closes this connection: try again later.
    Busy,
}

/// The client's answer to a challenge (`proof` None when it holds no secret or the server has none).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub nonce: [u8; NONCE_BYTES],
    pub name: String,
    pub proof: Option<Proof>,
}

/// The server's decision.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Verdict {
    Accepted {
        proof: Proof,
    },
    /// The server holds no secret: only joining is possible on this connection.
    Unkeyed,
    Refused,
}

/// How a connection ended its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Both sides proved the cluster secret.
    Authenticated,
    /// The server holds no secret: the connection carries only `JoinCluster`.
    Unkeyed,
}

pub(crate) fn nonce() -> [u8; NONCE_BYTES] {
    rand::random()
}

/// Server side: the verdict for `answer` to the challenge `(nonce, name)`.
pub(crate) fn judge(credentials: &Credentials, nonce: &[u8; NONCE_BYTES], answer: &Answer) -> Verdict {
    let Some(secret) = credentials.secret() else { return Verdict::Unkeyed };
    let names = [credentials.name(), answer.name.as_str()];
    let expected = secret.proof(Side::Client, nonce, &answer.nonce, names);
    match &answer.proof {
        Some(proof) if constant_time_eq(proof, &expected) => {
            Verdict::Accepted { proof: secret.proof(Side::Server, nonce, &answer.nonce, names) }
        }
        _ => Verdict::Refused,
    }
}

/// Client side: the answer to `hello`, and what to expect back. `Err(Busy)` for a full server.
pub(crate) fn answer(credentials: &Credentials, hello: Hello) -> Result<(Answer, Expect), RpcError> {
    let Hello::Challenge { nonce: server_nonce, name: server_name, keyed } = hello else {
        return Err(RpcError::Busy);
    };
    let client_nonce = nonce();
    let names = [server_name.as_str(), credentials.name()];
    let secret = credentials.secret().filter(|_| keyed);
    let proof = secret.as_ref().map(|s| s.proof(Side::Client, &server_nonce, &client_nonce, names));
    let expect = Expect {
        server_proof: secret.map(|s| s.proof(Side::Server, &server_nonce, &client_nonce, names)),
        server_name,
    };
    Ok((Answer { nonce: client_nonce, name: credentials.name().to_string(), proof }, expect))
}

/// What the client expects the server's verdict to prove.
pub(crate) struct Expect {
    server_proof: Option<Proof>,
    server_name: String,
}

impl Expect {
    /// Client side: the standing of the connection after the server's `verdict`.
    pub(crate) fn check(&self, verdict: Verdict) -> Result<Standing, RpcError> {
        match (verdict, &self.server_proof) {
            (Verdict::Accepted { proof }, Some(expected)) if constant_time_eq(&proof, expected) => {
                Ok(Standing::Authenticated)
            }
            (Verdict::Accepted { .. }, _) => {
                Err(RpcError::Unauthenticated(format!("{} did not prove the cluster secret", self.server_name)))
            }
            (Verdict::Unkeyed, _) => Ok(Standing::Unkeyed),
            (Verdict::Refused, _) => {
                Err(RpcError::Unauthenticated(format!("{} refused this node's credentials", self.server_name)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(client: &Credentials, server: &Credentials) -> Result<Standing, RpcError> {
        let server_nonce = nonce();
        let hello =
            Hello::Challenge { nonce: server_nonce, name: server.name().into(), keyed: server.secret().is_some() };
        let (answer, expect) = answer(client, hello)?;
        expect.check(judge(server, &server_nonce, &answer))
    }

    #[test]
    fn the_same_secret_authenticates_both_ways() {
        let secret = ClusterSecret::generate();
        let (a, b) = (Credentials::new("a", Some(secret.clone())), Credentials::new("b", Some(secret)));
        assert_eq!(handshake(&a, &b).unwrap(), Standing::Authenticated);
    }

    #[test]
    fn another_secret_or_none_is_refused() {
        let server = Credentials::new("leaf", Some(ClusterSecret::generate()));
        assert!(handshake(&Credentials::new("other", Some(ClusterSecret::generate())), &server).is_err());
        assert!(handshake(&Credentials::new("stranger", None), &server).is_err());
    }

    #[test]
    fn a_server_without_a_secret_is_only_unkeyed() {
        let client = Credentials::new("master", Some(ClusterSecret::generate()));
        assert_eq!(handshake(&client, &Credentials::new("fresh", None)).unwrap(), Standing::Unkeyed);
    }

    #[test]
    fn a_server_claiming_acceptance_without_the_secret_is_not_trusted() {
        let client = Credentials::new("master", Some(ClusterSecret::generate()));
        let hello = Hello::Challenge { nonce: nonce(), name: "impostor".into(), keyed: true };
        let (_, expect) = answer(&client, hello).unwrap();
        assert!(expect.check(Verdict::Accepted { proof: [7; 32] }).is_err());
    }

    #[test]
    fn a_proof_for_one_challenge_does_not_answer_another() {
        let secret = ClusterSecret::generate();
        let (client, server) = (Credentials::new("a", Some(secret.clone())), Credentials::new("b", Some(secret)));
        let first = nonce();
        let hello = Hello::Challenge { nonce: first, name: "b".into(), keyed: true };
        let (answer, _) = answer(&client, hello).unwrap();
        assert!(matches!(judge(&server, &nonce(), &answer), Verdict::Refused));
        assert!(matches!(judge(&server, &first, &answer), Verdict::Accepted { .. }));
    }
}
