//! Reaching one of several servers: every address of every configured name, in turn, each with
//! a short timeout of its own.
//!
//! `server` may name a host with several addresses (one of them dead), or list the nodes of a
//! cluster. The first address that accepts a TCP connection wins; the list is always tried from
//! the start, so the gateway returns to the first server once it is back (at the next reconnect).
//! The per-address timeout keeps an address that drops packets from eating the whole connect
//! budget: without it a dead first address would hide every address after it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Why no address of any server accepted a connection: one entry per name or address tried.
#[derive(Debug, thiserror::Error)]
#[error("{}", .tried.join("; "))]
pub struct DialError {
    tried: Vec<String>,
    /// Every address was reached and refused the connection: nothing listens there, which
    /// callers report differently from an unreachable or unresolvable server.
    all_refused: bool,
}

impl DialError {
    /// As an I/O error whose kind is `ConnectionRefused` when every address refused, so that
    /// code above the dialer can tell "nothing listens" from other failures.
    pub fn into_io(self) -> std::io::Error {
        let kind = if self.all_refused {
            std::io::ErrorKind::ConnectionRefused
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, self)
    }
}

/// Connects to the first address that answers, trying the servers (`host:port`) in order and
/// every address each one resolves to. Returns the stream, the server it belongs to and the
/// address.
pub async fn connect_first(
    servers: &[String],
    per_address: Duration,
) -> Result<(TcpStream, String, SocketAddr), DialError> {
    let mut tried = Vec::new();
    let mut all_refused = true;
    for server in servers {
        let addrs = match tokio::time::timeout(per_address, tokio::net::lookup_host(server)).await {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(e)) => {
                all_refused = false;
                tried.push(format!("{server}: cannot resolve: {e}"));
                continue;
            }
            Err(_) => {
                all_refused = false;
                tried.push(format!("{server}: no DNS answer within {per_address:?}"));
                continue;
            }
        };
        if addrs.is_empty() {
            all_refused = false;
            tried.push(format!("{server}: resolves to no address"));
        }
        for addr in addrs {
            match tokio::time::timeout(per_address, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, server.clone(), addr)),
                Ok(Err(e)) => {
                    all_refused &= e.kind() == std::io::ErrorKind::ConnectionRefused;
                    tried.push(format!("{server} ({addr}): {e}"));
                }
                Err(_) => {
                    all_refused = false;
                    tried.push(format!(
                        "{server} ({addr}): no answer within {per_address:?}"
                    ));
                }
            }
        }
    }
    if tried.is_empty() {
        all_refused = false;
        tried.push("no server configured".to_owned());
    }
    Err(DialError { tried, all_refused })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn skips_dead_servers_and_takes_the_first_that_answers() {
        let live = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_addr = live.local_addr().expect("addr");
        // A port that was free a moment ago: connecting is refused at once.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let servers = [
            dead.to_string(),
            "no-such-host.invalid:5347".to_owned(),
            live_addr.to_string(),
        ];
        let (_stream, server, addr) = connect_first(&servers, Duration::from_secs(5))
            .await
            .expect("the live server answers");
        assert_eq!((server.as_str(), addr), (servers[2].as_str(), live_addr));
    }

    #[tokio::test]
    async fn reports_every_address_it_tried() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let e = connect_first(
            &[dead.to_string(), dead.to_string()],
            Duration::from_secs(5),
        )
        .await
        .expect_err("nothing listens");
        let text = e.to_string();
        assert_eq!(text.matches(&dead.to_string()).count(), 4, "{text}");
    }
}
