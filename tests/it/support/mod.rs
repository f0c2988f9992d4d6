//! Test rig shared by the integration tests (the modules of `tests/it/`).
//!
//! * [`prosody`]: a private Prosody 0.12 per test (own ports, config, data, certificates),
//!   hosting the gateway's XEP-0114 component domain and optionally a MUC and a pubsub service.
//! * [`ejabberd`]: a private ejabberd node per test (own node name, cookie, ports, spool),
//!   configured from `deploy/ejabberd-component.yml`; several can form a cluster.
//! * [`server`]: either of the two behind one interface, and [`per_server!`] to run one test
//!   body against both.
//! * [`certs`]: the test CA and server certificate both servers use; [`components`]: the
//!   component domains and secrets they host.
//! * [`client`]: [`TestClient`], an XMPP user on tokio-xmpp that keeps every stanza it receives
//!   so that a test can look for one that arrived earlier.
//! * [`gateway_toml`]: the gateway's configuration file built in code, a test adding only the
//!   keys it is about.
//! * [`gateway`]: the gateway binary run as a child process with its own config, state dir and
//!   log file.
//! * [`metrics`]: reads the gateway's metrics endpoint.
//! * [`mosquitto`]: a private Mosquitto (own port, config, persistence directory) for MQTT tests,
//!   and a steady QoS 1 load that counts what the broker acknowledged.
//! * [`mqtt_rig`]: Prosody, Mosquitto and a gateway connected to both, for MQTT tests.
//! * [`modbus`]: the pymodbus simulator with its request log.
//! * [`pty`]: a `socat` pty pair that can be unplugged and plugged in again.
//! * [`readout`]: an XEP-0323 momentary readout, flattened to its fields.
//! * [`stranger`]: a user who writes raw XML (hostile input) and collects the answers by id.
//!
//! Every wait here has a deadline ([`TIMEOUT`] unless a test says otherwise); nothing sleeps to wait
//! for something that can be awaited. Where only polling is possible (a port that starts to
//! accept, a process that exits, a line in a log file), the loop polls with a deadline.
//!
//! The rig is a toolbox: some of its helpers (a gateway restart, extra Prosody configuration)
//! are there for the next test rather than a current one, hence the `allow` below.
#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod components;
pub mod ejabberd;
pub mod gateway;
pub mod gateway_toml;
pub mod metrics;
pub mod modbus;
pub mod mosquitto;
pub mod mqtt_rig;
pub mod prosody;
pub mod pty;
pub mod readout;
pub mod server;
pub mod stranger;

pub use client::TestClient;
pub use ejabberd::{Ejabberd, EjabberdOpts};
pub use gateway::{Gateway, GatewayOpts};
pub use gateway_toml::GatewayToml;
pub use modbus::ModbusServer;
pub use mosquitto::Mosquitto;
pub use mqtt_rig::MqttRig;
pub use prosody::{Prosody, ProsodyOpts};
pub use pty::PtyPair;
pub use server::{Kind, Server, ServerOpts};
pub use stranger::Stranger;

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// Default deadline for one wait in the rig (a stanza, a reply, a service coming up).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between two checks where a condition can only be polled.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A loopback TCP port that is free and that nothing else in this process was given.
///
/// Taken below the kernel's ephemeral range, not with a bind to port 0: a port from that range
/// can be handed, between this call and the server's bind, to the source side of any outgoing
/// connection (tests open many), and the server then fails with "address in use". Below the
/// range only an explicit bind takes a port; a counter keeps the tests of this process apart
/// and a random start keeps concurrent test processes apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const LOW: u32 = 10_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let high = ephemeral_low().clamp(LOW + 1_000, 65_535);
    let span = high - LOW;
    let next = NEXT.get_or_init(|| AtomicU32::new(rand::random::<u32>() % span));
    for _ in 0..span {
        let port = (LOW + next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {high}")
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `prefix` followed by 12 random hex digits: unique names for domains, users and resources.
pub fn random_id(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}{:012x}", n & 0xffff_ffff_ffff)
}

/// Random printable secret (hex), e.g. for a component.
pub fn random_secret() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!("{a:016x}{b:016x}")
}

/// Polls `cond` until it is true or `timeout` has passed; returns its last value.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether something accepts TCP connections on `addr` within `timeout`.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await;
        if let Ok(Ok(_stream)) = attempt {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits for `child` to exit, at most `timeout`; `None` if it is still running then.
pub async fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends signal `sig` (e.g. `libc::SIGTERM`) to process `pid`. Errors (already gone) are ignored.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our own children.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGKILL and reap, for Drop impls (a killed process exits at once, so the wait is immediate).
pub fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Output of a finished helper command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `cmd` to completion with stdout and stderr captured (through files in `scratch_dir`, so
/// a chatty command cannot block on a full pipe). Panics if it does not finish within `timeout`.
pub async fn run_command(cmd: &mut Command, scratch_dir: &Path, timeout: Duration) -> CmdOutput {
    let tag = random_id("cmd-");
    let out_path = scratch_dir.join(format!("{tag}.stdout"));
    let err_path = scratch_dir.join(format!("{tag}.stderr"));
    let out = File::create(&out_path).expect("create stdout capture file");
    let err = File::create(&err_path).expect("create stderr capture file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    let status = match wait_child(&mut child, timeout).await {
        Some(status) => status,
        None => {
            kill_and_reap(&mut child);
            panic!("{} did not finish within {timeout:?}", describe(cmd));
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    CmdOutput {
        status,
        stdout,
        stderr,
    }
}

/// `program arg1 arg2 …` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Whether `program` is found on `$PATH` (or is an existing path).
pub fn have_program(program: impl AsRef<OsStr>) -> bool {
    let program = Path::new(program.as_ref());
    if program.components().count() > 1 {
        return program.exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Fails the test unless `program` is installed, naming the Debian `package` that brings it: a
/// test never passes without the tool it needs.
pub fn require_program(program: &str, package: &str) {
    assert!(
        have_program(program),
        "{program} is not installed: install the Debian package `{package}` \
         (scripts/install-deps.sh installs everything the tests need)"
    );
}

/// The last `n` lines of `text`, for failure reports.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
