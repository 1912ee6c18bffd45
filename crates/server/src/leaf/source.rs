//! Requests from a leaf to another leaf, the source of a partition copy or a reference catch-up: one pooled client
//! per source, and calls that turn a remote error or a broken connection into a message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use canopy_rpc::client::{CONNECT_TIMEOUT, resolve};
use canopy_rpc::{Client, Credentials, Request, Response};

/// How long one request to a source leaf may take.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);

/// One request to a source leaf (of a partition copy or a reference catch-up); a broken exchange drops the client's
/// pooled connections so the next try connects afresh.
pub(crate) async fn call(source: &Client, request: &Request) -> Result<Response, String> {
    match source.call(request, SOURCE_TIMEOUT).await {
        Ok(Response::Error(e)) => Err(format!("source leaf: {e}")),
        Ok(response) => Ok(response),
        Err(e) => {
            source.flush();
            Err(format!("source leaf unreachable: {e}"))
        }
    }
}

/// Source leaves a leaf keeps a client for; a leaf copies from few sources, so the map is cleared when full.
const SOURCE_CLIENTS_MAX: usize = 64;

/// The client for the source leaf at `host:rpc_port`, presenting this leaf's credentials (the source serves only
/// its cluster), kept between copies and catch-ups: every reference write makes each holder catch up, and a pooled
/// connection saves a TCP connection and a handshake per write and holder.
pub(crate) fn client(host: &str, rpc_port: u16, credentials: &Arc<Credentials>) -> Result<Arc<Client>, String> {
    type SourceClients = HashMap<(String, u16), Arc<Client>>;
    static CLIENTS: OnceLock<Mutex<SourceClients>> = OnceLock::new();
    let mut clients = CLIENTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(client) = clients.get(&(host.to_string(), rpc_port)) {
        return Ok(client.clone());
    }
    let addr = resolve(host, rpc_port).map_err(|e| format!("cannot resolve source leaf: {e}"))?;
    if clients.len() >= SOURCE_CLIENTS_MAX {
        clients.clear();
    }
    let client = Arc::new(Client::new(addr, CONNECT_TIMEOUT, credentials.clone()));
    clients.insert((host.to_string(), rpc_port), client.clone());
    Ok(client)
}
