//! A private Prosody 0.12 for one test: its own loopback ports, config, data, pid and log files
//! and TLS certificates, all in a temporary directory that goes away with it.
//!
//! The config follows what the gateway meets in production (component, MUC and PubSub services as deployments run them):
//! component ports are global options, components use `kick_old` so that a reconnecting gateway
//! replaces its ghost, MUC rooms start locked, only pubsub admins may create nodes. Test-only
//! differences: c2s also accepts plaintext logins (the test client has no custom-CA hook, see
//! client.rs), `mod_limits` is off so that nothing is throttled, s2s and HTTP are off so that only
//! the two chosen ports are bound.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::components::Components;
use super::{
    certs, free_port, kill_and_reap, random_id, run_command, send_signal, tail, wait_child,
    wait_for_port,
};

/// Where Debian puts the binaries.
const PROSODY: &str = "/usr/bin/prosody";
const PROSODYCTL: &str = "/usr/bin/prosodyctl";

/// The one VirtualHost: users are `name@localhost`.
pub const DOMAIN: &str = "localhost";
/// Domain of the MUC service when [`ProsodyOpts::muc`] is set.
pub const MUC_DOMAIN: &str = "rooms.localhost";
/// Domain of the pubsub service when [`ProsodyOpts::pubsub`] is set.
pub const PUBSUB_DOMAIN: &str = "pubsub.localhost";
/// The XEP-0363 upload service of [`ProsodyOpts::upload`] (`http_file_share`).
pub const UPLOAD_DOMAIN: &str = "upload.localhost";

/// How long Prosody may take to come up (it usually takes about 0.3 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM'd Prosody may take to exit before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to host besides the VirtualHost `localhost`.
#[derive(Clone, Debug)]
pub struct ProsodyOpts {
    /// XEP-0114 component domains; each gets a random secret.
    pub components: Vec<String>,
    /// Host a MUC service on [`MUC_DOMAIN`].
    pub muc: bool,
    /// Host a pubsub service on [`PUBSUB_DOMAIN`] with every component domain as admin.
    pub pubsub: bool,
    /// Host an XEP-0363 upload service on [`UPLOAD_DOMAIN`], served over HTTP on a loopback port.
    pub upload: bool,
    /// Minimum level written to the log file (`debug`, `info`, `warn`, `error`).
    pub log_level: String,
    /// Extra Lua lines for the global section.
    pub extra_global: String,
    /// Extra Lua lines for the VirtualHost `localhost`.
    pub extra_vhost: String,
    /// Extra Lua lines for the MUC component (e.g. `muc_room_locking = false`).
    pub extra_muc: String,
    /// Extra Lua lines for the pubsub component (e.g. `autocreate_on_publish = true`).
    pub extra_pubsub: String,
}

impl Default for ProsodyOpts {
    fn default() -> Self {
        Self {
            components: Vec::new(),
            muc: false,
            pubsub: false,
            upload: false,
            log_level: "debug".to_owned(),
            extra_global: String::new(),
            extra_vhost: String::new(),
            extra_muc: String::new(),
            extra_pubsub: String::new(),
        }
    }
}

impl ProsodyOpts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts one more component domain.
    pub fn component(mut self, domain: impl Into<String>) -> Self {
        self.components.push(domain.into().to_lowercase());
        self
    }

    /// Hosts a component named `gw-<random>.localhost` (see [`Prosody::component_domain`]).
    pub fn random_component(self) -> Self {
        self.component(format!("{}.localhost", random_id("gw-")))
    }

    pub fn muc(mut self) -> Self {
        self.muc = true;
        self
    }

    pub fn pubsub(mut self) -> Self {
        self.pubsub = true;
        self
    }

    pub fn upload(mut self) -> Self {
        self.upload = true;
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    pub fn extra_global(mut self, lua: &str) -> Self {
        self.extra_global.push_str(lua);
        self.extra_global.push('\n');
        self
    }

    pub fn extra_vhost(mut self, lua: &str) -> Self {
        self.extra_vhost.push_str(lua);
        self.extra_vhost.push('\n');
        self
    }

    pub fn extra_muc(mut self, lua: &str) -> Self {
        self.extra_muc.push_str(lua);
        self.extra_muc.push('\n');
        self
    }

    pub fn extra_pubsub(mut self, lua: &str) -> Self {
        self.extra_pubsub.push_str(lua);
        self.extra_pubsub.push('\n');
        self
    }
}

/// A running (or stopped) private Prosody. Killed on drop; its log tail is printed when the test
/// is failing.
pub struct Prosody {
    /// Holds config, data, certificates and logs; removed on drop.
    dir: TempDir,
    opts: ProsodyOpts,
    config_path: PathBuf,
    log_path: PathBuf,
    c2s_port: u16,
    component_port: u16,
    /// Prosody's HTTP port (only listening with [`ProsodyOpts::upload`]).
    http_port: u16,
    /// (domain, secret) for every component, in the order of `opts.components`.
    secrets: Components,
    ca_path: PathBuf,
    /// The server process; `None` while stopped. Reaped by `stop` or on drop.
    child: Option<Child>,
}

impl Prosody {
    /// Writes config and certificates, starts Prosody and waits until c2s and component ports
    /// accept connections. Panics (with the log) if it does not come up.
    pub async fn start(opts: ProsodyOpts) -> Prosody {
        assert!(
            Path::new(PROSODY).exists(),
            "{PROSODY} not found: install Debian's prosody package (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("prosody-")
            .tempdir()
            .expect("create Prosody temp dir");
        let root = dir.path().to_path_buf();
        fs::create_dir(root.join("data")).expect("create data dir");
        let mut secrets = Components::default();
        for domain in &opts.components {
            secrets.add(domain);
        }
        let mut prosody = Prosody {
            config_path: root.join("prosody.cfg.lua"),
            log_path: root.join("prosody.log"),
            ca_path: root.join("ca").join("ca.pem"),
            c2s_port: free_port(),
            component_port: free_port(),
            http_port: free_port(),
            secrets,
            opts,
            child: None,
            dir,
        };
        let mut names: Vec<&str> = vec![DOMAIN, MUC_DOMAIN, PUBSUB_DOMAIN];
        names.extend(prosody.secrets.domains());
        certs::make(prosody.dir.path(), &names).await;
        fs::write(&prosody.config_path, prosody.config_text()).expect("write Prosody config");
        prosody.launch().await;
        prosody
    }

    /// Creates (or resets the password of) `user@localhost`.
    pub async fn register(&self, user: &str, pass: &str) {
        let mut cmd = Command::new(PROSODYCTL);
        cmd.arg("--config")
            .arg(&self.config_path)
            .args(["register", user, DOMAIN, pass])
            .current_dir(self.dir.path());
        let out = run_command(&mut cmd, self.dir.path(), Duration::from_secs(30)).await;
        assert!(
            out.success(),
            "prosodyctl register {user} failed ({}):\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }

    /// Stops Prosody (if running) and starts it again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Starts a stopped Prosody again with the same configuration and data.
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    /// Stops Prosody: SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), libc::SIGTERM);
        if wait_child(&mut child, STOP_TIMEOUT).await.is_none() {
            eprintln!("Prosody ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
            kill_and_reap(&mut child);
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// c2s (client) listener, plaintext with STARTTLS offered.
    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.c2s_port))
    }

    /// XEP-0114 component listener (bound only when a component is configured).
    /// Where Prosody serves HTTP (the upload service's files), with [`ProsodyOpts::upload`].
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    pub fn component_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.component_port))
    }

    /// The VirtualHost: `localhost`.
    pub fn domain(&self) -> &'static str {
        DOMAIN
    }

    /// Component domains in the order given.
    pub fn component_domains(&self) -> Vec<&str> {
        self.secrets.domains()
    }

    /// The first component domain.
    pub fn component_domain(&self) -> &str {
        self.secrets.first("Prosody")
    }

    /// The secret of component `domain`.
    pub fn component_secret(&self, domain: &str) -> &str {
        self.secrets.secret(domain, "Prosody")
    }

    /// A gateway `[xmpp]` section for component `domain` (inline secret: fine for tests).
    pub fn component_toml(&self, domain: &str) -> String {
        self.secrets.toml(domain, self.component_addr(), "Prosody")
    }

    pub fn muc_domain(&self) -> &'static str {
        assert!(
            self.opts.muc,
            "this Prosody hosts no MUC (ProsodyOpts::muc)"
        );
        MUC_DOMAIN
    }

    pub fn pubsub_domain(&self) -> &'static str {
        assert!(
            self.opts.pubsub,
            "this Prosody hosts no pubsub (ProsodyOpts::pubsub)"
        );
        PUBSUB_DOMAIN
    }

    /// PEM file of the CA that signed the server certificate (SANs: `localhost`, the component
    /// domains, the MUC and pubsub domains, 127.0.0.1).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Prosody logged so far (level [`ProsodyOpts::log_level`]).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "Prosody is already running");
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("console.log"))
            .expect("open Prosody console log");
        let console_err = console.try_clone().expect("clone console log handle");
        // -F: stay in the foreground (the config option `daemonize` is deprecated in 0.12).
        let child = Command::new(PROSODY)
            .arg("--config")
            .arg(&self.config_path)
            .arg("-F")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROSODY}: {e} (Debian package `prosody`)"));
        self.child = Some(child);

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // Prosody binds the component port only when at least one component is configured.
        let mut addrs = vec![self.c2s_addr()];
        if !self.secrets.is_empty() {
            addrs.push(self.component_addr());
        }
        if self.opts.upload {
            addrs.push(self.http_addr());
        }
        for addr in addrs {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let up = tokio::select! {
                up = wait_for_port(addr, left) => up,
                () = self.exited() => false,
            };
            if !up {
                let exited = !self.is_running();
                self.stop().await;
                panic!(
                    "Prosody did not listen on {addr} within {START_TIMEOUT:?}{}\n\
                     --- console ---\n{}\n--- log (tail) ---\n{}",
                    if exited { " (it exited)" } else { "" },
                    fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default(),
                    tail(&self.log_text(), 60)
                );
            }
        }
    }

    /// Resolves when the child process has exited (polls).
    async fn exited(&mut self) {
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(25)).await,
                _ => return,
            }
        }
    }

    fn config_text(&self) -> String {
        let root = self.dir.path().display();
        let o = &self.opts;
        // SAFETY: geteuid(2) cannot fail and has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        let mut c = String::new();
        let _ = write!(
            c,
            r#"-- Private Prosody for one test (written by tests/support/prosody.rs).
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}/certs"
run_as_root = {root_user}
log = {{ {{ levels = {{ min = "{level}" }}, to = "file", filename = "{root}/prosody.log" }} }}

interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
-- component_ports/component_interfaces are read from the global section only.
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}

modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "time"; "version"; "uptime";
    "smacks"; "carbons"; "private"; "blocklist"; "pep"; "posix";
}}
-- Nothing that binds more ports (s2s, http, admin telnet), and no rate limits (mod_limits).
modules_disabled = {{ "s2s"; "limits"; "http"; "bosh"; "websocket"; "admin_telnet"; "proxy65" }}

-- Test clients may log in without TLS; STARTTLS is still offered.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
ssl = {{ certificate = "{root}/certs/localhost.crt"; key = "{root}/certs/localhost.key" }}
storage = "internal"
{extra_global}
VirtualHost "{DOMAIN}"
    authentication = "internal_plain"
{extra_vhost}
"#,
            level = o.log_level,
            c2s = self.c2s_port,
            component = self.component_port,
            extra_global = o.extra_global,
            extra_vhost = o.extra_vhost,
        );
        if o.upload {
            // Prosody's own HTTP server on loopback: no https, and the URLs in upload slots
            // point at it (`http_file_share_base_url` would turn its route off).
            c = c.replace("\"http\"; \"bosh\"", "\"bosh\"").replace(
                "http_ports = { }",
                &format!(
                    "http_ports = {{ {port} }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\n\
                     http_external_url = \"http://127.0.0.1:{port}/\"\n\
                     http_default_host = \"{UPLOAD_DOMAIN}\"",
                    port = self.http_port
                ),
            );
        }
        for (domain, secret) in self.secrets.iter() {
            let _ = write!(
                c,
                "\nComponent \"{domain}\"\n    component_secret = \"{secret}\"\n    \
                 component_conflict_resolve = \"kick_old\"\n"
            );
        }
        if o.muc {
            let _ = write!(c, "\nComponent \"{MUC_DOMAIN}\" \"muc\"\n{}", o.extra_muc);
        }
        if o.upload {
            let _ = write!(c, "\n{}\n", upload_component());
        }
        if o.pubsub {
            let admins: Vec<String> = self
                .secrets
                .domains()
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect();
            let _ = write!(
                c,
                "\nComponent \"{PUBSUB_DOMAIN}\" \"pubsub\"\n    admins = {{ {} }}\n{}",
                admins.join(", "),
                o.extra_pubsub
            );
        }
        c
    }
}

/// The `http_file_share` component block of docs/alerts-and-charts.md, for [`UPLOAD_DOMAIN`]:
/// the tests configure the upload service exactly as the guide tells administrators to.
fn upload_component() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts-and-charts.md");
    let doc = fs::read_to_string(&path).expect("read docs/alerts-and-charts.md");
    let head = "Component \"upload.example.org\" \"http_file_share\"";
    let start = doc
        .find(head)
        .unwrap_or_else(|| panic!("{} has no `{head}` block", path.display()));
    let block: Vec<&str> = doc[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .collect();
    block
        .join("\n")
        .replace("upload.example.org", UPLOAD_DOMAIN)
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- Prosody log (last 80 lines, {}) ---\n{}",
                self.log_path.display(),
                tail(&self.log_text(), 80)
            );
            if std::env::var_os("RIG_KEEP").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("RIG_KEEP: kept {}", self.dir.path().display());
            }
        }
    }
}
