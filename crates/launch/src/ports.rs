//! Free ports for nodes: a node needs its MySQL port `P` and its default RPC port `P + 10000` both free.

use std::net::TcpListener;

/// The server derives its RPC port from the MySQL port by this offset (`canopy server --help`).
pub const RPC_PORT_OFFSET: u16 = 10000;
/// Where [`free_ports`] starts searching; offset by the pid so that concurrent runs rarely race for one port.
const PORT_SEARCH_FROM: u16 = 30000;
const PORT_SEARCH_SPREAD: u16 = 20000;

/// True when `port` and its default RPC port (`port + 10000`) can both be bound on `host` right now.
pub fn port_usable(host: &str, port: u16) -> bool {
    let Some(rpc) = port.checked_add(RPC_PORT_OFFSET) else { return false };
    port != 0 && TcpListener::bind((host, port)).is_ok() && TcpListener::bind((host, rpc)).is_ok()
}

/// The first usable port at or above `from` that is not in `taken` and whose RPC port does not collide with a taken
/// port either.
pub fn next_usable_port(host: &str, from: u16, taken: &[u16]) -> Option<u16> {
    let last = u16::MAX - RPC_PORT_OFFSET;
    (from.max(1)..=last).find(|&p| !clashes(p, taken) && port_usable(host, p))
}

/// `count` distinct usable ports on `host`, none equal to another's RPC port, searched from a pid-dependent start
/// (the nodes bind them a moment later; a race with another program shows up as a node that exits before it is
/// ready, with its log).
pub fn free_ports(host: &str, count: usize) -> anyhow::Result<Vec<u16>> {
    let from = PORT_SEARCH_FROM + (std::process::id() % u32::from(PORT_SEARCH_SPREAD)) as u16;
    let last = u16::MAX - RPC_PORT_OFFSET;
    let mut ports: Vec<u16> = Vec::with_capacity(count);
    for port in (from..=last).chain(1024..from) {
        if ports.len() == count {
            break;
        }
        if !clashes(port, &ports) && port_usable(host, port) {
            ports.push(port);
        }
    }
    if ports.len() < count {
        anyhow::bail!("found only {} of {count} free port pairs (P and P+{RPC_PORT_OFFSET}) on {host}", ports.len());
    }
    Ok(ports)
}

fn clashes(port: u16, taken: &[u16]) -> bool {
    taken.iter().any(|&t| {
        t == port || Some(t) == port.checked_add(RPC_PORT_OFFSET) || t.checked_add(RPC_PORT_OFFSET) == Some(port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_usable_port_skips_taken_ports_and_their_rpc_ports() {
        let p = next_usable_port("127.0.0.1", 40000, &[]).expect("some port is free");
        let q = next_usable_port("127.0.0.1", p, &[p]).expect("another port is free");
        assert!(q > p);
        assert_ne!(Some(q), p.checked_add(RPC_PORT_OFFSET));
    }

    #[test]
    fn free_ports_never_pairs_a_port_with_another_ports_rpc_port() {
        let ports = free_ports("127.0.0.1", 5).expect("five free port pairs");
        assert_eq!(ports.len(), 5);
        for (i, p) in ports.iter().enumerate() {
            assert!(!clashes(*p, &[&ports[..i], &ports[i + 1..]].concat()), "{p} clashes in {ports:?}");
        }
    }
}
