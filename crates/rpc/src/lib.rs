//! Inter-node RPC: the messages aggregators and leaves exchange, their framing, a pooled client and a server loop.
//! Only this crate knows the internal wire format. Written directly on tokio rather than with gRPC: the messages
//! are a closed Rust enum shared by both ends, and a length-prefixed postcard frame needs neither code generation
//! nor protoc (see ARCHITECTURE.md).

pub mod auth;
pub mod client;
pub mod frame;
pub mod message;
pub mod server;
mod wait;

pub use auth::{ClusterSecret, Credentials};
pub use client::Client;
pub use message::{
    LocalDatabase, LogRecord, NodeStatus, PartitionRef, PartitionTerm, PendingPartition, RemoteError, RemoteErrorKind,
    ReplicaTarget, ReplicateBatch, Request, Response, Target,
};
pub use server::{Handler, serve, serve_local};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed by peer")]
    Closed,
    #[error("frame too large")]
    FrameTooLarge,
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    /// The peer is at its connection limit: it is alive, only busy.
    #[error("the node is busy (at its connection limit)")]
    Busy,
    /// The handshake failed: the peer does not hold this cluster's secret, or refused ours.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The peer holds no cluster secret (an unconfigured node): it can only be asked to join.
    #[error("the node belongs to no cluster (it holds no cluster secret)")]
    PeerUnkeyed,
}

impl RpcError {
    /// Whether the error shows that nothing listens at the address (refused, reset or closed before any answer):
    /// what a dead process looks like. A busy node (`Busy`), a timeout or a failed handshake is not a refusal.
    pub fn is_refusal(&self) -> bool {
        match self {
            RpcError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            ),
            RpcError::Closed => true,
            _ => false,
        }
    }
}
