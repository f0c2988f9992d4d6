//! The gateway binary as a child process: `xmpp-iot-gateway --config FILE run` in a temporary
//! directory holding its config, its `state_dir` and its logs (stderr → `gateway.log`).
//!
//! The config text may use two placeholders: `{dir}` (the temporary directory, which is also the
//! config's folder) and `{state_dir}`. When it sets no `state_dir`, one is added under
//! `[gateway]`. Each start gets its own `NOTIFY_SOCKET` datagrams recorded, so a test can wait
//! for `READY=1` (the systemd readiness the gateway sends) instead of guessing.

use std::fs;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::watch;

use super::{eventually, kill_and_reap, run_command, send_signal, tail, wait_child, CmdOutput};

/// The binary Cargo built for these integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_xmpp-iot-gateway");

/// SIGTERM must stop the gateway within 5 s (docs/operations.md); allow some slack on a loaded CI machine.
pub const TERM_TIMEOUT: Duration = Duration::from_secs(10);

/// How the gateway process is started, besides its config.
#[derive(Clone, Debug)]
pub struct GatewayOpts {
    /// Files written into the config's folder before each start: (relative name, content),
    /// e.g. `("component.secret", secret)` for `secret_file = "component.secret"`.
    pub files: Vec<(String, String)>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Global arguments placed before `run` (e.g. `--log`, `trace`).
    pub args: Vec<String>,
    /// `RUST_LOG` for the child.
    pub rust_log: String,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            rust_log: "debug".to_owned(),
        }
    }
}

impl GatewayOpts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.to_owned(), content.to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_owned();
        self
    }
}

/// A gateway process. Killed on drop; its log tail is printed when the test is failing.
pub struct Gateway {
    /// Config, state dir, logs, notify socket; removed on drop.
    dir: TempDir,
    opts: GatewayOpts,
    config_path: PathBuf,
    state_dir: PathBuf,
    log_path: PathBuf,
    stdout_path: PathBuf,
    /// The running process; `None` after it was reaped.
    child: Option<Child>,
    /// Datagrams received on `NOTIFY_SOCKET`, all starts together.
    notify: watch::Receiver<Vec<String>>,
    /// Index into `notify` where the current start's datagrams begin.
    notify_mark: usize,
    /// Tells the notify reader thread to stop (set on drop).
    notify_stop: Arc<AtomicBool>,
    notify_thread: Option<JoinHandle<()>>,
    notify_path: PathBuf,
    /// Number of starts so far.
    starts: u32,
}

impl Gateway {
    /// Writes `config_toml` (see the module doc for placeholders) and starts the gateway.
    pub fn spawn(config_toml: &str) -> Gateway {
        Self::spawn_with(config_toml, GatewayOpts::default())
    }

    /// [`spawn`](Self::spawn) with extra files, environment or arguments.
    pub fn spawn_with(config_toml: &str, opts: GatewayOpts) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("gateway-")
            .tempdir()
            .expect("create gateway temp dir");
        let root = dir.path().to_path_buf();
        let state_dir = root.join("state");
        let notify_path = root.join("notify.sock");
        let socket = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set notify socket timeout");
        let (notify_tx, notify) = watch::channel(Vec::new());
        let notify_stop = Arc::new(AtomicBool::new(false));
        let stop = notify_stop.clone();
        let notify_thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    notify_tx.send_modify(|all| all.push(text));
                }
            }
        });
        let mut gw = Gateway {
            config_path: root.join("gateway.toml"),
            log_path: root.join("gateway.log"),
            stdout_path: root.join("stdout.log"),
            state_dir,
            opts,
            child: None,
            notify,
            notify_mark: 0,
            notify_stop,
            notify_thread: Some(notify_thread),
            notify_path,
            starts: 0,
            dir,
        };
        gw.write_config(config_toml);
        gw.start();
        gw
    }

    /// Runs a one-shot command (`check`, `version`, …) of the gateway binary with `config_toml`
    /// (if any) written as in [`spawn`](Self::spawn); waits at most 60 s for it to finish.
    pub async fn cli(config_toml: Option<&str>, args: &[&str]) -> CmdOutput {
        let dir = tempfile::Builder::new()
            .prefix("gateway-cli-")
            .tempdir()
            .expect("create temp dir");
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .env_remove("XMPP_IOT_GATEWAY_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(toml) = config_toml {
            let path = dir.path().join("gateway.toml");
            let text = prepare_config(toml, dir.path(), &dir.path().join("state"));
            fs::write(&path, text).expect("write gateway config");
            cmd.arg("--config").arg(&path);
        }
        cmd.args(args);
        run_command(&mut cmd, dir.path(), Duration::from_secs(60)).await
    }

    /// Starts the gateway again with the same config and state dir, unless it is running.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        self.child = None;
        for (name, content) in &self.opts.files {
            fs::write(self.dir.path().join(name), content)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open gateway log");
        let _ = writeln!(log, "=== rig: start #{} ===", self.starts);
        let stdout = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .expect("open gateway stdout log");
        self.notify_mark = self.notify.borrow().len();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config_path)
            .args(&self.opts.args)
            .arg("run")
            .current_dir(self.dir.path())
            .env_remove("XMPP_IOT_GATEWAY_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", &self.opts.rust_log)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}")),
        );
    }

    /// SIGTERM, then wait for the exit status. Panics (after SIGKILL) if the gateway is still
    /// running after [`TERM_TIMEOUT`].
    pub async fn terminate(&mut self) -> ExitStatus {
        match self.terminate_within(TERM_TIMEOUT).await {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "gateway did not exit within {TERM_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    tail(&self.log_text(), 40)
                );
            }
        }
    }

    /// SIGTERM and wait at most `timeout`; `None` if still running (it is left running).
    pub async fn terminate_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("gateway was not started");
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        send_signal(child.id(), libc::SIGTERM);
        wait_child(child, timeout).await
    }

    /// SIGKILL, no grace (a crash or power cut).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the running gateway.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(child) = self.child.as_ref() {
            send_signal(child.id(), sig);
        }
    }

    /// Writes a new config and sends SIGHUP (reload).
    pub fn reload(&mut self, config_toml: &str) {
        self.write_config(config_toml);
        self.signal(libc::SIGHUP);
    }

    /// Stops the gateway gracefully (SIGTERM; panics if it hangs) and starts it again with the
    /// same config and state dir. Returns the exit status of the stopped run.
    pub async fn restart(&mut self) -> Option<ExitStatus> {
        let status = if self.is_running() {
            Some(self.terminate().await)
        } else {
            None
        };
        self.start();
        status
    }

    /// Waits at most `timeout` for the gateway to exit on its own (e.g. a config error).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("gateway was not started");
        wait_child(child, timeout).await
    }

    /// Exit status if it has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait on gateway"))
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces the config file (placeholders and `state_dir` handled as in `spawn`).
    pub fn write_config(&self, config_toml: &str) {
        let text = prepare_config(config_toml, self.dir.path(), &self.state_dir);
        fs::write(&self.config_path, text).expect("write gateway config");
    }

    /// The config as written (after placeholder substitution).
    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Everything the gateway wrote to stderr, all starts (separated by `=== rig: start #N ===`).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Everything the gateway wrote to stdout.
    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (any start); polls.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.log_text().contains(needle)).await
    }

    /// `NOTIFY_SOCKET` datagrams of the current start (e.g. `READY=1`, `STATUS=…`).
    pub fn notify_messages(&self) -> Vec<String> {
        self.notify.borrow()[self.notify_mark..].to_vec()
    }

    /// Waits until a `NOTIFY_SOCKET` datagram of the current start has a line equal to `line`
    /// (e.g. `READY=1`, `STOPPING=1`), or one starting with it when it ends with `=`
    /// (e.g. `STATUS=`).
    pub async fn wait_notify(&mut self, line: &str, timeout: Duration) -> bool {
        let mark = self.notify_mark;
        let hit = |all: &Vec<String>| {
            all[mark..].iter().any(|msg| {
                msg.lines().any(|l| {
                    if line.ends_with('=') {
                        l.starts_with(line)
                    } else {
                        l == line
                    }
                })
            })
        };
        matches!(
            tokio::time::timeout(timeout, self.notify.wait_for(hit)).await,
            Ok(Ok(_))
        )
    }

    /// Waits for `READY=1` from the current start.
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        self.wait_notify("READY=1", timeout).await
    }

    /// Waits until the current start reports its upstream link up (`STATUS=… upstream connected`):
    /// `READY=1` alone only says the first attempt finished, and a stanza sent to the gateway's
    /// JIDs before the link is up bounces.
    pub async fn wait_upstream(&mut self, timeout: Duration) -> bool {
        let mark = self.notify_mark;
        let hit = |all: &Vec<String>| {
            all[mark..].iter().any(|msg| {
                msg.lines()
                    .any(|l| l.starts_with("STATUS=") && l.ends_with("upstream connected"))
            })
        };
        matches!(
            tokio::time::timeout(timeout, self.notify.wait_for(hit)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A failing test wants to know whether the gateway was still running (a gateway that
        // died leaves no trace in its own log when it was killed).
        let exited = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status),
            _ => None,
        };
        self.kill();
        self.notify_stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.notify_thread.take() {
            let _ = thread.join();
        }
        if std::thread::panicking() {
            if let Some(status) = exited {
                eprintln!("--- the gateway had exited before the test ended: {status} ---");
            }
            eprintln!(
                "--- gateway log (last 120 lines, {}) ---\n{}",
                self.log_path.display(),
                tail(&self.log_text(), 120)
            );
            if std::env::var_os("RIG_KEEP").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("RIG_KEEP: kept {}", self.dir.path().display());
            }
        }
    }
}

/// Substitutes `{dir}` and `{state_dir}` and adds `state_dir` under `[gateway]` if absent.
fn prepare_config(toml: &str, dir: &Path, state_dir: &Path) -> String {
    let quote = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    let text = toml
        .replace("{dir}", &quote(dir))
        .replace("{state_dir}", &quote(state_dir));
    let has_state_dir = text.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix("state_dir")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if has_state_dir {
        return text;
    }
    let line = format!("state_dir = \"{}\"", quote(state_dir));
    let mut out = String::with_capacity(text.len() + line.len() + 16);
    let mut inserted = false;
    for l in text.lines() {
        out.push_str(l);
        out.push('\n');
        let header = l.split('#').next().unwrap_or("").trim();
        if !inserted && header == "[gateway]" {
            out.push_str(&line);
            out.push('\n');
            inserted = true;
        }
    }
    if inserted {
        out
    } else {
        format!("[gateway]\n{line}\n\n{text}")
    }
}
