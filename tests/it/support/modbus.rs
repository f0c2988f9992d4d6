//! The pymodbus simulator (`tests/fixtures/modbus_server.py`) as a child process, with its
//! request log: an independent Modbus TCP or RTU server for the Modbus tests.
//!
//! Needs the test venv with pymodbus (`scripts/install-deps.sh` makes it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{eventually, kill_and_reap, run_command, send_signal, tail, wait_child};

/// The test venv's Python, with pymodbus and slixmpp.
pub fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-deps.sh (it creates the venv with pymodbus and slixmpp)",
        p.display()
    );
    p
}

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/modbus_server.py")
}

/// The pymodbus server as a child process, with its request log.
pub struct ModbusServer {
    dir: TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// `ready` lines seen so far (one per start).
    starts: usize,
}

impl ModbusServer {
    /// `--tcp 127.0.0.1:PORT` or `--serial PATH`, plus `--units`.
    pub async fn start(args: &[&str]) -> ModbusServer {
        let dir = tempfile::Builder::new()
            .prefix("modbus-server-")
            .tempdir()
            .expect("temp dir");
        let mut server = ModbusServer {
            args: args.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            starts: 0,
        };
        server.spawn().await;
        server
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("requests.log")
    }

    /// While this file exists, input-register reads get exception 4.
    pub fn fault_path(&self) -> PathBuf {
        self.dir.path().join("fault")
    }

    pub async fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .expect("server output file");
        let child = Command::new(python())
            .arg(fixture())
            .args(&self.args)
            .arg("--log")
            .arg(self.log_path())
            .arg("--fault")
            .arg(self.fault_path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone file"))
            .stderr(out)
            .spawn()
            .expect("start the pymodbus server");
        self.child = Some(child);
        self.starts += 1;
        let want = self.starts;
        let ready = eventually(Duration::from_secs(20), || {
            self.log_lines().iter().filter(|l| *l == "ready").count() >= want
        })
        .await;
        assert!(ready, "the Modbus server did not start:\n{}", self.output());
    }

    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The requests the server received, e.g. `unit=1 fc=3 address=0 count=14`.
    pub fn requests(&self) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.starts_with("unit="))
            .collect()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), libc::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(10))
                .await
                .is_none()
            {
                kill_and_reap(&mut child);
            }
        }
    }

    /// A one-shot read through pymodbus's client (TCP only): the values on one line.
    pub async fn read(&self, address: &str, kind: &str, start: u16, count: u16) -> String {
        let out = run_command(
            Command::new(python()).arg(fixture()).args([
                "--read",
                address,
                "--kind",
                kind,
                "--address",
                &start.to_string(),
                "--count",
                &count.to_string(),
            ]),
            self.dir.path(),
            Duration::from_secs(30),
        )
        .await;
        assert!(out.success(), "read failed: {}", out.stderr);
        out.stdout.trim().to_owned()
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- Modbus server output ---\n{}\n--- last requests ---\n{}",
                tail(&self.output(), 30),
                self.requests()[self.requests().len().saturating_sub(20)..].join("\n")
            );
        }
    }
}
