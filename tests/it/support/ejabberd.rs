//! A private ejabberd (Debian's package, 23.01) for one test: its own Erlang node name and
//! cookie, loopback ports, configuration, Mnesia spool, logs and TLS certificates, all in a
//! temporary directory that goes away with it. Several can form a cluster ([`Ejabberd::join`]).
//!
//! The node is run through a copy of Debian's `ejabberdctl` without its `INSTALLUSER` line (so
//! it runs as the current user instead of `su ejabberd`) and with a private `--ctl-config`
//! (`/etc/ejabberd/ejabberdctl.cfg` sets the config path, and `--config` does not override it).
//! `HOME` points into the temporary directory, so Erlang's cookie file stays there too.
//!
//! The configuration is a base that follows Debian's default `ejabberd.yml` (the `normal`
//! shaper, SCRAM-SHA-1 password storage, the usual modules) plus `deploy/ejabberd-component.yml`, read from the repository
//! and included as it is, with only its example names, password and port replaced: what the
//! tests run against is what the documentation tells people to configure. The base leaves out
//! the keys that file sets. Test-only differences: no s2s, no HTTP, only loopback ports, and
//! plaintext c2s logins are accepted (the test client has no custom-CA hook, see client.rs).

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::components::Components;
use super::{certs, free_port, random_id, random_secret, run_command, tail, wait_for_port};

const EJABBERDCTL: &str = "/usr/sbin/ejabberdctl";
/// The documented snippet the configuration is built from.
const SNIPPET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ejabberd-component.yml");

/// The one virtual host: users are `name@localhost`.
pub const DOMAIN: &str = "localhost";
pub const MUC_DOMAIN: &str = "rooms.localhost";
pub const PUBSUB_DOMAIN: &str = "pubsub.localhost";

/// How long a node may take to come up (about 1–3 s on an idle machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node hosts besides `localhost`, MUC and pubsub (those come with the snippet).
#[derive(Clone, Debug, Default)]
pub struct EjabberdOpts {
    /// XEP-0114 component domains with their secrets; all on the one listener.
    pub components: Components,
    /// The client-mode account the snippet's `iot_gateway` ACL names (`gateway` by default).
    pub gateway_account: Option<String>,
    /// Replaces the snippet's `max_user_sessions` for ordinary accounts (default 10).
    pub max_user_sessions: Option<u32>,
    /// Set `global_routes` to this instead of the snippet's value.
    pub global_routes: Option<bool>,
}

impl EjabberdOpts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts one more component domain with a random secret.
    pub fn component(mut self, domain: impl Into<String>) -> Self {
        self.components.add(domain);
        self
    }

    /// Hosts a component named `gw-<random>.localhost`.
    pub fn random_component(mut self) -> Self {
        self.components.add_random();
        self
    }

    pub fn gateway_account(mut self, user: &str) -> Self {
        self.gateway_account = Some(user.to_owned());
        self
    }

    pub fn max_user_sessions(mut self, n: u32) -> Self {
        self.max_user_sessions = Some(n);
        self
    }

    pub fn global_routes(mut self, on: bool) -> Self {
        self.global_routes = Some(on);
        self
    }
}

/// A running (or stopped) private ejabberd node. Stopped on drop; its log tail is printed when
/// the test is failing.
pub struct Ejabberd {
    dir: TempDir,
    opts: EjabberdOpts,
    node: String,
    cookie: String,
    ctl: PathBuf,
    ctl_cfg: PathBuf,
    c2s_port: u16,
    component_port: u16,
    running: bool,
}

impl Ejabberd {
    /// Writes the configuration and certificates, starts the node and waits until its c2s and
    /// component ports accept connections. Panics (with the log) if it does not come up.
    pub async fn start(opts: EjabberdOpts) -> Ejabberd {
        Self::start_with_cookie(opts, &random_secret()).await
    }

    /// Like [`start`](Self::start), with the Erlang cookie of the cluster to join later.
    pub async fn start_with_cookie(opts: EjabberdOpts, cookie: &str) -> Ejabberd {
        assert!(
            Path::new(EJABBERDCTL).exists(),
            "{EJABBERDCTL} not found: install Debian's ejabberd package (scripts/install-deps.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("ejabberd-")
            .tempdir()
            .expect("create ejabberd temp dir");
        let root = dir.path().to_path_buf();
        for sub in ["spool", "logs", "home"] {
            fs::create_dir(root.join(sub)).expect("create ejabberd dir");
        }
        let mut names = vec![DOMAIN, MUC_DOMAIN, PUBSUB_DOMAIN];
        names.extend(opts.components.domains());
        certs::make(&root, &names).await;
        let mut server = Ejabberd {
            node: format!("{}@localhost", random_id("ejt")),
            cookie: cookie.to_owned(),
            ctl: root.join("ejabberdctl"),
            ctl_cfg: root.join("ejabberdctl.cfg"),
            c2s_port: free_port(),
            component_port: free_port(),
            running: false,
            opts,
            dir,
        };
        server.write_files();
        server.launch().await;
        server
    }

    /// Creates `user@localhost` with `pass`.
    pub async fn register(&self, user: &str, pass: &str) {
        let out = self.ctl_run(&["register", user, DOMAIN, pass]).await;
        assert!(
            out.success(),
            "ejabberdctl register {user} failed ({}):\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }

    /// Makes this node join the cluster of `other` (same cookie: see
    /// [`start_with_cookie`](Self::start_with_cookie)).
    pub async fn join(&self, other: &Ejabberd) {
        let out = self.ctl_run(&["join_cluster", &other.node]).await;
        assert!(
            out.success(),
            "ejabberdctl join_cluster {} failed ({}):\n{}\n{}\n--- log ---\n{}",
            other.node,
            out.status,
            out.stdout,
            out.stderr,
            tail(&self.log_text(), 40)
        );
        // join_cluster restarts the node's applications: wait for its listeners again.
        self.wait_listening().await;
    }

    /// The nodes of this node's cluster, as ejabberd lists them.
    pub async fn cluster_nodes(&self) -> String {
        self.ctl_run(&["list_cluster"]).await.stdout
    }

    /// Stops the node (if running) and starts it again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops the node: `ejabberdctl stop`, then SIGKILL if it is still there after 20 s.
    pub async fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pid = self.pid();
        let _ = self.ctl_run(&["stop"]).await;
        if let Some(pid) = pid {
            let gone = super::eventually(STOP_TIMEOUT, || !process_exists(pid)).await;
            if !gone {
                eprintln!("ejabberd node {} ignored stop; killing it", self.node);
                super::send_signal(pid, libc::SIGKILL);
            }
        }
    }

    pub fn is_running(&self) -> bool {
        self.running && self.pid().is_some_and(process_exists)
    }

    /// The beam process, from the pid file the node writes.
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.path().join("ejabberd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.c2s_port))
    }

    pub fn component_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.component_port))
    }

    pub fn domain(&self) -> &'static str {
        DOMAIN
    }

    pub fn component_domains(&self) -> Vec<&str> {
        self.opts.components.domains()
    }

    pub fn component_domain(&self) -> &str {
        self.opts.components.first("ejabberd")
    }

    pub fn component_secret(&self, domain: &str) -> &str {
        self.opts.components.secret(domain, "ejabberd")
    }

    /// A gateway `[xmpp]` section for component `domain` (inline secret: fine for tests).
    pub fn component_toml(&self, domain: &str) -> String {
        self.opts
            .components
            .toml(domain, self.component_addr(), "ejabberd")
    }

    pub fn muc_domain(&self) -> &'static str {
        MUC_DOMAIN
    }

    pub fn pubsub_domain(&self) -> &'static str {
        PUBSUB_DOMAIN
    }

    /// PEM file of the CA that signed the server certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca").join("ca.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the node logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs").join("ejabberd.log")).unwrap_or_default()
    }

    fn write_files(&self) {
        let root = self.dir.path();
        // Debian's ejabberdctl without `INSTALLUSER=ejabberd`: run as whoever runs the tests.
        let script = fs::read_to_string(EJABBERDCTL).expect("read ejabberdctl");
        let script: String = script
            .lines()
            .filter(|l| !l.starts_with("INSTALLUSER="))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&self.ctl, script).expect("write ejabberdctl copy");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.ctl, fs::Permissions::from_mode(0o755)).expect("chmod");
        let r = root.display();
        fs::write(
            &self.ctl_cfg,
            format!(
                "ERLANG_NODE={node}\n\
                 ERL_OPTIONS=\"-setcookie {cookie} -env ERL_CRASH_DUMP_BYTES 0\"\n\
                 INET_DIST_INTERFACE=127.0.0.1\n\
                 EJABBERD_CONFIG_PATH={r}/ejabberd.yml\n\
                 SPOOL_DIR={r}/spool\n\
                 LOGS_DIR={r}/logs\n\
                 EJABBERD_PID_PATH={r}/ejabberd.pid\n\
                 CONTRIB_MODULES_PATH={r}/contrib\n\
                 CONTRIB_MODULES_CONF_DIR={r}/contrib-conf\n",
                node = self.node,
                cookie = self.cookie,
            ),
        )
        .expect("write ejabberdctl.cfg");
        fs::write(root.join("gateway.yml"), self.snippet()).expect("write gateway.yml");
        fs::write(root.join("ejabberd.yml"), self.base_config()).expect("write ejabberd.yml");
    }

    /// `deploy/ejabberd-component.yml` with the example names, password and port replaced.
    fn snippet(&self) -> String {
        let text = fs::read_to_string(SNIPPET).expect("read deploy/ejabberd-component.yml");
        let mut out = String::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            // The one documented host becomes every component of this node.
            if line.trim_start().starts_with("\"sensors.example.org\":") {
                let indent = &line[..line.len() - line.trim_start().len()];
                let password = lines.next().expect("the host's password line");
                assert!(
                    password.trim_start().starts_with("password:"),
                    "the snippet's host entry changed shape: {password}"
                );
                for (domain, secret) in self.opts.components.iter() {
                    let _ = writeln!(
                        out,
                        "{indent}\"{domain}\":\n{indent}  password: \"{secret}\""
                    );
                }
                continue;
            }
            let mut line = line
                .replace("port: 5347", &format!("port: {}", self.component_port))
                .replace("rooms.example.org", MUC_DOMAIN)
                .replace("pubsub.example.org", PUBSUB_DOMAIN);
            let account = self.opts.gateway_account.as_deref().unwrap_or("gateway");
            line = line.replace("gateway@example.org", &format!("{account}@{DOMAIN}"));
            if let Some(on) = self.opts.global_routes {
                line = line.replace("global_routes: false", &format!("global_routes: {on}"));
            }
            if let Some(n) = self.opts.max_user_sessions {
                if line.trim() == "- 10" {
                    line = line.replace("- 10", &format!("- {n}"));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        if self.opts.components.is_empty() {
            // A listener without hosts is refused; a placeholder domain keeps the file whole.
            out = out.replace(
                "    hosts:\n",
                "    hosts:\n      \"unused.localhost\":\n        password: \"unused\"\n",
            );
        }
        for (from, what) in [
            ("example.org", "an example name"),
            ("CHANGE-ME", "the example password"),
        ] {
            assert!(
                !out.lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains(from)),
                "{what} left in the snippet after substitution:\n{out}"
            );
        }
        out
    }

    /// Debian's defaults, minus what the snippet sets, on loopback ports only.
    fn base_config(&self) -> String {
        let r = self.dir.path().display();
        format!(
            r#"# Private ejabberd for one test (written by tests/support/ejabberd.rs).
hosts: ["{DOMAIN}"]
loglevel: info
certfiles:
  - "{r}/certs/localhost.crt"
  - "{r}/certs/localhost.key"

listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls: true

s2s_use_starttls: optional

# As Debian's file: passwords stored as SCRAM-SHA-1 hashes, so SCRAM-SHA-1 (and PLAIN) is what
# clients are offered.
auth_password_format: scram

acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
      - ::1/128
  admin:
    user: "admin@{DOMAIN}"

access_rules:
  local:
    allow: local
  c2s:
    deny: blocked
    allow: all
  announce:
    allow: admin
  configure:
    allow: admin
  muc_create:
    allow: local
  pubsub_createnode:
    allow: local
  trusted_network:
    allow: loopback

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

shaper:
  normal:
    rate: 3000
    burst_size: 20000
  fast: 100000

modules:
  mod_adhoc: {{}}
  mod_blocking: {{}}
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_disco: {{}}
  mod_last: {{}}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {{}}
  mod_privacy: {{}}
  mod_private: {{}}
  mod_roster:
    versioning: true
  mod_stream_mgmt:
    resend_on_timeout: if_offline
  mod_time: {{}}
  mod_version:
    show_os: false

include_config_file: "{r}/gateway.yml"
"#,
            c2s = self.c2s_port,
        )
    }

    async fn ctl_run(&self, args: &[&str]) -> super::CmdOutput {
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("--ctl-config")
            .arg(&self.ctl_cfg)
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .current_dir(self.dir.path());
        run_command(&mut cmd, self.dir.path(), CTL_TIMEOUT).await
    }

    async fn launch(&mut self) {
        assert!(!self.running, "ejabberd is already running");
        let out = self.ctl_run(&["start"]).await;
        assert!(
            out.success(),
            "ejabberdctl start failed ({}):\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        self.running = true;
        self.wait_listening().await;
    }

    async fn wait_listening(&self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        for addr in [self.c2s_addr(), self.component_addr()] {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A refused configuration is logged as critical and the node stops: no need to wait.
            let up = tokio::select! {
                up = wait_for_port(addr, left) => up,
                () = self.failed() => false,
            };
            assert!(
                up,
                "ejabberd node {} did not listen on {addr} within {START_TIMEOUT:?}\n\
                 --- log (tail) ---\n{}\n--- error.log ---\n{}",
                self.node,
                tail(&self.log_text(), 60),
                fs::read_to_string(self.dir.path().join("logs").join("error.log"))
                    .unwrap_or_default()
            );
        }
    }
}

impl Ejabberd {
    /// Resolves once the node has logged a critical error (polls the log).
    async fn failed(&self) {
        while !self.log_text().contains("[critical]") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // The node is a daemon, not our child: it is stopped by its pid, at once.
        if self.running {
            if let Some(pid) = self.pid() {
                super::send_signal(pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- ejabberd log of {} (last 80 lines) ---\n{}",
                self.node,
                tail(&self.log_text(), 80)
            );
            if std::env::var_os("RIG_KEEP").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("RIG_KEEP: kept {}", self.dir.path().display());
            }
        }
    }
}
