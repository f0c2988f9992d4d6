//! A `socat` pty pair standing in for a UART and its cable: the gateway opens one end (`port`),
//! the test or a simulator the other (`device`). Both ends are symlinks in a temporary
//! directory, so the pair can be killed ("unplugged") and started again on the same paths.
//!
//! Needs `socat` (`scripts/install-deps.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::{eventually, kill_and_reap, require_program, send_signal, wait_child, TIMEOUT};

/// A `socat` pty pair: `device` is the test's end, `port` the gateway's (both symlinks).
pub struct PtyPair {
    _dir: tempfile::TempDir,
    device: PathBuf,
    port: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl PtyPair {
    pub async fn new() -> PtyPair {
        require_program("socat", "socat");
        let dir = tempfile::Builder::new()
            .prefix("pty-")
            .tempdir()
            .expect("temp dir");
        let mut pair = PtyPair {
            device: dir.path().join("device"),
            port: dir.path().join("port"),
            log: dir.path().join("socat.log"),
            _dir: dir,
            child: None,
        };
        pair.start().await;
        pair
    }

    /// Starts socat (again) on the same link paths and waits for both links to exist.
    pub async fn start(&mut self) {
        self.remove_links();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("socat log");
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", self.device.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.port.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat: {e} (Debian package `socat`)"));
        self.child = Some(child);
        let (device, port) = (self.device.clone(), self.port.clone());
        assert!(
            eventually(TIMEOUT, || device.exists() && port.exists()).await,
            "socat did not create its links; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Kills socat abruptly, like a USB adapter pulled out: both ptys close and their paths go.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), libc::SIGKILL);
            assert!(
                wait_child(&mut child, TIMEOUT).await.is_some(),
                "socat exits"
            );
        }
        // A killed socat leaves its links behind, pointing at pty numbers that another pair may
        // get next.
        self.remove_links();
    }

    fn remove_links(&self) {
        let _ = std::fs::remove_file(&self.device);
        let _ = std::fs::remove_file(&self.port);
    }

    /// The test's end, as a serial port.
    pub fn open_device(&self) -> Device {
        let stream = tokio_serial::new(self.device.to_string_lossy(), 115_200)
            .open_native_async()
            .unwrap_or_else(|e| panic!("open {}: {e}", self.device.display()));
        Device { stream }
    }

    /// The gateway's end.
    pub fn port(&self) -> &Path {
        &self.port
    }

    /// The test's end, for a simulator that opens it itself.
    pub fn device_path(&self) -> &Path {
        &self.device
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

/// The device end of a pty pair.
pub struct Device {
    stream: SerialStream,
}

impl Device {
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write in time")
        .expect("write to the pty");
    }

    /// Reads one line (up to and including `\n`) that the gateway wrote.
    pub async fn line(&mut self) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        tokio::time::timeout(TIMEOUT, async {
            while !got.ends_with(b"\n") {
                self.stream
                    .read_exact(&mut byte)
                    .await
                    .expect("read the pty");
                got.push(byte[0]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line from the gateway; got {got:?}"));
        String::from_utf8(got).expect("UTF-8 line")
    }
}
