//! A private Mosquitto for one test: its own loopback port, config, persistence directory and
//! log in a temporary directory, run as a child process and killed on drop.
//!
//! Persistence is on, with its own `persistence_location`: a broker stopped with [`stop`] and
//! started again with [`start_again`] keeps the gateway's session (its subscriptions and the
//! QoS 1 messages queued for it), as a production broker does; [`forget_sessions`] deletes the
//! saved database so that the next start has lost every session.
//!
//! Publishing goes through `mosquitto_pub` (an independent client); [`Mosquitto::subscriber`]
//! uses rumqttc so that a test knows when its subscription is in place (SUBACK) before it makes
//! the gateway publish.
//!
//! [`stop`]: Mosquitto::stop
//! [`start_again`]: Mosquitto::start_again
//! [`forget_sessions`]: Mosquitto::forget_sessions

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tempfile::TempDir;
use tokio::sync::mpsc;

use super::{
    free_port, have_program, kill_and_reap, random_id, run_command, send_signal, tail, wait_child,
    wait_for_port, TIMEOUT,
};

/// How long Mosquitto may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM'd Mosquitto may take to save its database and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker binary: on `$PATH`, else where Debian puts it.
fn mosquitto_bin() -> &'static str {
    if have_program("mosquitto") {
        "mosquitto"
    } else {
        "/usr/sbin/mosquitto"
    }
}

/// A running (or stopped) private Mosquitto.
pub struct Mosquitto {
    dir: TempDir,
    port: u16,
    /// The TLS listener's port, when started with [`Mosquitto::start_tls`].
    tls_port: Option<u16>,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the config and starts the broker on a free loopback port.
    pub async fn start() -> Mosquitto {
        Self::start_with(None).await
    }

    /// Like [`start`](Self::start), with a second listener speaking TLS with this certificate
    /// chain and key (PEM files; e.g. the ones the rig's Prosody made for `localhost`).
    pub async fn start_tls(cert: &Path, key: &Path) -> Mosquitto {
        Self::start_with(Some((cert, key))).await
    }

    async fn start_with(tls: Option<(&Path, &Path)>) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .expect("create mosquitto temp dir");
        let port = free_port();
        let root = dir.path();
        let data = root.join("data");
        fs::create_dir_all(&data).expect("create mosquitto data dir");
        let log_path = root.join("mosquitto.log");
        // As root, Mosquitto would switch to the `mosquitto` user, who cannot write here.
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let config = format!(
            "# A private broker for one test.\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {data}/\n\
             {user}\
             log_dest file {log}\n\
             log_type all\n",
            data = data.display(),
            log = log_path.display(),
            user = if as_root { "user root\n" } else { "" },
        );
        let mut config = config;
        let tls_port = tls.map(|(cert, key)| {
            let tls_port = free_port();
            config.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
            tls_port
        });
        let config_path = root.join("mosquitto.conf");
        fs::write(&config_path, config).expect("write mosquitto config");
        let mut m = Mosquitto {
            dir,
            port,
            tls_port,
            config_path,
            log_path,
            child: None,
        };
        m.start_again().await;
        m
    }

    /// Starts the broker (again) with the same port, config and persistence directory.
    pub async fn start_again(&mut self) {
        if let Some(child) = &mut self.child {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
        }
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("console.log"))
            .expect("open mosquitto console log");
        let _ = writeln!(log, "=== rig: start ===");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto: {e}"));
        self.child = Some(child);
        for port in [Some(self.port), self.tls_port].into_iter().flatten() {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            assert!(
                wait_for_port(addr, START_TIMEOUT).await,
                "mosquitto did not come up on {addr}:\n{}",
                tail(&self.log_text(), 30)
            );
        }
    }

    /// SIGTERM (Mosquitto saves its database) and wait for the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), libc::SIGTERM);
        if wait_child(&mut child, STOP_TIMEOUT).await.is_none() {
            kill_and_reap(&mut child);
            panic!("mosquitto did not stop within {STOP_TIMEOUT:?}");
        }
    }

    /// Deletes the saved database (call while stopped): the next start knows no session.
    pub fn forget_sessions(&self) {
        let _ = fs::remove_file(self.dir.path().join("data").join("mosquitto.db"));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtts://localhost:PORT` of the TLS listener (the name the rig's certificates carry).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("mqtts://localhost:{port}")
    }

    /// `mqtt://127.0.0.1:PORT`, for the gateway's `url`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes one message with `mosquitto_pub` at QoS 1 (waiting for the broker's PUBACK).
    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut cmd = self.pub_command(topic);
        cmd.arg("-m").arg(payload);
        if retain {
            cmd.arg("-r");
        }
        let out = run_command(&mut cmd, self.dir.path(), TIMEOUT).await;
        assert!(
            out.success(),
            "mosquitto_pub to {topic} failed: {}",
            out.stderr
        );
    }

    /// Starts `mosquitto_pub -l` publishing one message per line of `lines` at QoS 1 and returns
    /// it running (wait for it with [`super::wait_child`]).
    pub fn spawn_publish_lines(&self, topic: &str, lines: &[String]) -> Child {
        let input = self.dir.path().join(format!("{}.lines", random_id("pub-")));
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&input, text).expect("write mosquitto_pub input");
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-l",
            ])
            .stdin(fs::File::open(&input).expect("open mosquitto_pub input"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto_pub: {e}"))
    }

    /// Publishes one message per line of `lines` at QoS 1 with one `mosquitto_pub -l`.
    pub async fn publish_lines(&self, topic: &str, lines: &[String]) {
        let input = self.dir.path().join(format!("{}.lines", random_id("pub-")));
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&input, text).expect("write mosquitto_pub input");
        // `-l` reads stdin; run it through a shell redirect so that run_command can keep its
        // stdin null.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "mosquitto_pub -h 127.0.0.1 -p {} -q 1 -t '{}' -l < '{}'",
            self.port,
            topic,
            input.display()
        ));
        let out = run_command(&mut cmd, self.dir.path(), TIMEOUT).await;
        assert!(out.success(), "mosquitto_pub -l failed: {}", out.stderr);
    }

    fn pub_command(&self, topic: &str) -> Command {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
        ]);
        cmd
    }

    /// A client subscribed to `filter` (QoS 1); returns once the broker acknowledged the
    /// subscription.
    pub async fn subscriber(&self, filter: &str) -> Subscriber {
        let mut options = MqttOptions::new(random_id("test-sub-"), "127.0.0.1", self.port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    // Test code: a broker that goes away ends the subscriber.
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(TIMEOUT, ready_rx)
            .await
            .expect("SUBACK in time")
            .expect("subscriber task alive");
        Subscriber {
            _client: client,
            rx,
            task,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_and_reap(child);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- mosquitto log (last 60 lines, {}) ---\n{}",
                self.log_path.display(),
                tail(&self.log_text(), 60)
            );
            if std::env::var_os("RIG_KEEP").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("RIG_KEEP: kept {}", self.dir.path().display());
            }
        }
    }
}

/// Messages received on a subscription: (topic, payload).
pub struct Subscriber {
    /// Keeps the event loop's request channel open.
    _client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// The next message, if one arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, String)> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some((topic, payload))) => {
                Some((topic, String::from_utf8_lossy(&payload).into_owned()))
            }
            _ => None,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
