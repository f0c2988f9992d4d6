//! systemd integration: `sd_notify` over `$NOTIFY_SOCKET` (READY, STATUS, WATCHDOG, STOPPING).
//!
//! A few lines of datagram socket code instead of a dependency. Without `NOTIFY_SOCKET` every
//! call is a no-op, so the same binary runs under systemd, in a terminal and in tests.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    /// `None` when not started by systemd with `Type=notify`.
    target: Option<Target>,
}

enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").map(|s| {
            let bytes = s.as_encoded_bytes();
            match bytes.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(s.into()),
            }
        });
        Notifier { target }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification such as `READY=1` or `STATUS=...`. Failures are logged at debug:
    /// a missing systemd must never stop the gateway.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let res = UnixDatagram::unbound().and_then(|sock| match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
        });
        if let Err(e) = res {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// Half of `WATCHDOG_USEC`, when systemd asked for watchdog pings (for this process).
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            target: Some(Target::Path(path)),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier { target: None };
        assert!(!n.enabled());
        n.notify("READY=1");
    }
}
