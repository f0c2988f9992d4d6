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
//! [`Mosquitto::start_load`] is a steady QoS 1 load for fault tests: it publishes numbered
//! messages at a fixed rate, one at a time, and records which of them the broker acknowledged,
//! so that a test knows exactly which messages the broker took on, whatever happened meanwhile.
//!
//! [`stop`]: Mosquitto::stop
//! [`start_again`]: Mosquitto::start_again
//! [`forget_sessions`]: Mosquitto::forget_sessions

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};

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
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (Debian package `mosquitto`)",
                    mosquitto_bin()
                )
            });
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
            .unwrap_or_else(|e| {
                panic!("cannot start mosquitto_pub: {e} (Debian package `mosquitto-clients`)")
            })
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

    /// Starts a steady load: every `interval`, message `{"seq": N}` to each of `topics` at QoS 1
    /// (N = 1, 2, 3, … the same for every topic), each one sent after the previous one's PUBACK.
    /// It goes on through broker outages (reconnecting) until [`Load::stop`].
    pub fn start_load(&self, topics: &[String], interval: Duration) -> Load {
        let (stop, stop_rx) = watch::channel(false);
        let (acked_tx, acked) = watch::channel(0);
        let task = tokio::spawn(run_load(
            self.port,
            topics.to_vec(),
            interval,
            stop_rx,
            acked_tx,
        ));
        Load { stop, acked, task }
    }
}

/// A running load (see [`Mosquitto::start_load`]).
pub struct Load {
    stop: watch::Sender<bool>,
    /// Messages the broker acknowledged so far, all topics.
    acked: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<LoadReport>,
}

/// What a load sent, per topic.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Sequence numbers the broker acknowledged (PUBACK): the broker took these on.
    pub acked: BTreeMap<String, Vec<u64>>,
    /// Sequence numbers sent whose PUBACK never came (the link broke): they may or may not have
    /// reached the broker.
    pub unsure: BTreeMap<String, Vec<u64>>,
    /// Messages never sent because no broker was reachable.
    pub not_sent: usize,
}

impl LoadReport {
    pub fn acked(&self, topic: &str) -> &[u64] {
        self.acked.get(topic).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn unsure(&self, topic: &str) -> &[u64] {
        self.unsure
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn total_acked(&self) -> usize {
        self.acked.values().map(Vec::len).sum()
    }
}

impl Load {
    /// Messages acknowledged so far.
    pub fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Waits until at least `n` messages were acknowledged in all.
    pub async fn wait_acked(&mut self, n: u64, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.acked.wait_for(|a| *a >= n)).await,
            Ok(Ok(_))
        )
    }

    /// Stops after the message in flight and returns what was sent.
    pub async fn stop(self) -> LoadReport {
        let _ = self.stop.send(true);
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the load stops")
            .expect("the load task did not panic")
    }
}

/// How one message went.
enum Delivery {
    Acked,
    Unsure,
    NotSent,
}

async fn run_load(
    port: u16,
    topics: Vec<String>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    acked: watch::Sender<u64>,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut link = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return report,
        }
        seq += 1;
        for topic in &topics {
            let payload = format!(r#"{{"seq": {seq}}}"#);
            match publish_one(&mut link, port, topic, payload).await {
                Delivery::Acked => {
                    report.acked.entry(topic.clone()).or_default().push(seq);
                    acked.send_modify(|n| *n += 1);
                }
                Delivery::Unsure => report.unsure.entry(topic.clone()).or_default().push(seq),
                Delivery::NotSent => report.not_sent += 1,
            }
        }
    }
}

/// Publishes one message on `link` (connecting first if there is none) and waits for its
/// PUBACK. A broken link is dropped; the next message connects afresh.
async fn publish_one(
    link: &mut Option<(AsyncClient, EventLoop)>,
    port: u16,
    topic: &str,
    payload: String,
) -> Delivery {
    let (client, eventloop) = link.get_or_insert_with(|| {
        let mut options = MqttOptions::new(random_id("test-load-"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        AsyncClient::new(options, 16)
    });
    if client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
        .is_err()
    {
        *link = None;
        return Delivery::NotSent;
    }
    // Only one message is ever in flight, so any PUBACK is its.
    let mut written = false;
    let outcome = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) => written = true,
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    if outcome == Ok(true) {
        return Delivery::Acked;
    }
    *link = None;
    if written {
        Delivery::Unsure
    } else {
        Delivery::NotSent
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
