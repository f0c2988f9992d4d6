//! The connection to a bus: opening it, one transaction on it, and what its failures mean.
//!
//! tokio-modbus has no timeout and no reconnect of its own, and answers with
//! `Result<Result<Response, ExceptionCode>, Error>`. [`classify`] turns that (under our
//! timeout) into an [`Outcome`]: an exception is a device's refusal and the link stays; a
//! garbled or foreign answer fails the request and resynchronises the link; any other I/O error
//! means the link is gone and is reopened with back-off by the bus task.
//!
//! The bus task only sees the [`Connector`] and [`Link`] traits, so its scheduling is unit-tested
//! with an in-memory bus under paused time; [`RealConnector`] is the serial port or TCP socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use gateway_toolkit::serial_port::LineSettings;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::error::Elapsed;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, ProtocolError, Request, Response, Slave};
use tokio_serial::{SerialPort, SerialStream};

use tracing::{debug, warn};

use crate::config::{Framing, Parity, SerialSettings, Transport};
use crate::stats::BusStats;

/// An open connection to a bus.
pub(crate) trait Link: Send + 'static {
    /// One request to `unit`, one answer. No timeout: the caller adds it.
    fn call(
        &mut self,
        unit: u8,
        request: Request<'static>,
    ) -> impl Future<Output = tokio_modbus::Result<Response>> + Send;
}

/// Opens connections to one bus.
pub(crate) trait Connector: Send + 'static {
    type Link: Link;
    /// Opens the serial port or connects the socket. No timeout: the caller adds it.
    fn connect(&mut self) -> impl Future<Output = io::Result<Self::Link>> + Send;
    /// After a timeout, could a late answer be taken for the next request's? True for TCP
    /// (answers queue up in the socket; the link is reconnected), false for RTU (stale input
    /// is flushed before every request).
    fn resync_after_timeout(&self) -> bool;
    /// The silence the line needs between two requests (RTU: 3.5 character times).
    fn min_gap(&self) -> Duration;
}

/// What one transaction came to.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    Ok(T),
    /// The device answered with a Modbus exception: it refused, the link is fine.
    Exception(ExceptionCode),
    /// No answer within the timeout.
    Timeout,
    /// An answer that failed its CRC or could not be decoded.
    BadFrame(String),
    /// An answer to something else (another unit, transaction or function), or too short.
    Mismatch(String),
    /// The link failed (connection reset or closed, serial port gone).
    Lost(io::Error),
}

/// Sorts out a tokio-modbus result obtained under `tokio::time::timeout`.
pub(crate) fn classify<T>(r: Result<tokio_modbus::Result<T>, Elapsed>) -> Outcome<T> {
    match r {
        Err(_) => Outcome::Timeout,
        Ok(Ok(Ok(v))) => Outcome::Ok(v),
        Ok(Ok(Err(code))) => Outcome::Exception(code),
        Ok(Err(tokio_modbus::Error::Protocol(p))) => Outcome::Mismatch(match p {
            ProtocolError::HeaderMismatch { .. } => {
                "an answer from another unit or to another transaction".to_owned()
            }
            ProtocolError::FunctionCodeMismatch { .. } => {
                "an answer to another function".to_owned()
            }
        }),
        Ok(Err(tokio_modbus::Error::Transport(e))) if e.kind() == io::ErrorKind::InvalidData => {
            Outcome::BadFrame(e.to_string())
        }
        Ok(Err(tokio_modbus::Error::Transport(e))) => Outcome::Lost(e),
    }
}

/// `illegal data address (exception 2)`.
pub fn exception_name(code: ExceptionCode) -> String {
    let name = match code {
        ExceptionCode::IllegalFunction => "illegal function",
        ExceptionCode::IllegalDataAddress => "illegal data address",
        ExceptionCode::IllegalDataValue => "illegal data value",
        ExceptionCode::ServerDeviceFailure => "server device failure",
        ExceptionCode::Acknowledge => "acknowledge",
        ExceptionCode::ServerDeviceBusy => "server device busy",
        ExceptionCode::MemoryParityError => "memory parity error",
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond",
        ExceptionCode::Custom(_) => "non-standard exception",
    };
    format!("{name} (exception {})", u8::from(code))
}

/// The real bus: a serial port (RTU) or a TCP connection (Modbus TCP, or RTU over TCP).
#[derive(Debug, Clone)]
pub(crate) struct RealConnector {
    pub transport: Transport,
    /// The adapter id, for the RS-485 warning.
    adapter: Arc<str>,
    /// Where a port's refusal of RS-485 mode is counted.
    stats: Arc<BusStats>,
    /// The port refused RS-485 mode once already: later opens say so at DEBUG only.
    rs485_warned: bool,
}

impl RealConnector {
    pub fn new(transport: Transport, adapter: Arc<str>, stats: Arc<BusStats>) -> Self {
        RealConnector {
            transport,
            adapter,
            stats,
            rs485_warned: false,
        }
    }

    /// Puts the just-opened port into RS-485 mode when `rs485 = true`. A driver without it
    /// will not grow one on a retry, and an adapter that switches direction itself (USB) works
    /// without it: the link goes on with the port as it is, and the refusal is said once.
    fn rs485(&mut self, port: &SerialStream, serial: &SerialSettings) {
        let Some(settings) = &serial.rs485 else {
            return;
        };
        if let Err(e) = gateway_api::rs485::enable(port, settings) {
            self.stats.rs485_failures.fetch_add(1, Ordering::Relaxed);
            if self.rs485_warned {
                debug!(adapter = %self.adapter, port = %serial.port, error = %e, "Serial port still without RS-485 mode");
            } else {
                warn!(adapter = %self.adapter, port = %serial.port, error = %e,
                    "Serial port is used without RS-485 direction control (`rs485 = true`): a transceiver that needs RTS to send will not transmit");
                self.rs485_warned = true;
            }
        }
    }
}

/// A tokio-modbus client context, and whether its TCP server closed the connection.
pub(crate) struct ContextLink(Context, Option<Arc<AtomicBool>>);

impl Link for ContextLink {
    fn call(
        &mut self,
        unit: u8,
        request: Request<'static>,
    ) -> impl Future<Output = tokio_modbus::Result<Response>> + Send {
        self.0.set_slave(Slave(unit));
        let closed = self.1.clone();
        let call = self.0.call(request);
        async move {
            match call.await {
                // tokio-modbus reports the end of a TCP stream as `last_os_error()`, some stale
                // errno such as "Operation now in progress": say what happened instead.
                Err(tokio_modbus::Error::Transport(_))
                    if closed.is_some_and(|c| c.load(Ordering::Relaxed)) =>
                {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                    .into())
                }
                r => r,
            }
        }
    }
}

/// A TCP stream that notes when the server has closed it (a read found the end).
#[derive(Debug)]
struct Closing {
    stream: tokio::net::TcpStream,
    closed: Arc<AtomicBool>,
}

impl AsyncRead for Closing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.closed.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for Closing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connector for RealConnector {
    type Link = ContextLink;

    async fn connect(&mut self) -> io::Result<ContextLink> {
        match &self.transport {
            Transport::Rtu(serial) => {
                let serial = serial.clone();
                let port = open_serial(&serial)?;
                self.rs485(&port, &serial);
                Ok(ContextLink(
                    tokio_modbus::client::rtu::attach_slave(FreshInput(port), Slave(1)),
                    None,
                ))
            }
            Transport::Tcp { address, framing } => {
                let stream = connect_tcp(address).await?;
                // Requests are small and latency matters more than throughput.
                stream.set_nodelay(true)?;
                let closed = Arc::new(AtomicBool::new(false));
                let stream = Closing {
                    stream,
                    closed: closed.clone(),
                };
                let context = match framing {
                    Framing::Tcp => tokio_modbus::client::tcp::attach_slave(stream, Slave(1)),
                    Framing::Rtu => tokio_modbus::client::rtu::attach_slave(stream, Slave(1)),
                };
                Ok(ContextLink(context, Some(closed)))
            }
        }
    }

    fn resync_after_timeout(&self) -> bool {
        matches!(self.transport, Transport::Tcp { .. })
    }

    fn min_gap(&self) -> Duration {
        match &self.transport {
            Transport::Rtu(s) => inter_frame_gap(s),
            Transport::Tcp { .. } => Duration::ZERO,
        }
    }
}

fn open_serial(s: &SerialSettings) -> io::Result<SerialStream> {
    LineSettings {
        port: &s.port,
        baud: s.baud,
        data_bits: s.data_bits,
        parity: s.parity,
        stop_bits: s.stop_bits,
    }
    .open()
}

/// Connects to `host:port` (the loader has added the default port), trying each address the
/// name resolves to.
async fn connect_tcp(address: &str) -> io::Result<tokio::net::TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for addr in tokio::net::lookup_host(address).await? {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// RTU frames are delimited by 3.5 character times of silence; above 19200 baud the protocol
/// fixes it at 1.75 ms.
fn inter_frame_gap(s: &SerialSettings) -> Duration {
    if s.baud == 0 || s.baud > 19_200 {
        return Duration::from_micros(1750);
    }
    let bits_per_char =
        1 + u64::from(s.data_bits) + u64::from(s.parity != Parity::None) + u64::from(s.stop_bits);
    Duration::from_micros(bits_per_char * 3_500_000 / u64::from(s.baud))
}

/// A serial port that drops unread input before every request it sends: on a half-duplex line
/// anything waiting then is a late answer to an earlier, timed-out request, and would otherwise
/// be read as the answer to this one.
struct FreshInput(SerialStream);

impl AsyncRead for FreshInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for FreshInput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A failure to flush is not worth failing the request for (a pty may not support it).
        let _ = self.0.clear(tokio_serial::ClearBuffer::Input);
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(transport: Transport) -> RealConnector {
        RealConnector::new(
            transport,
            "bus".into(),
            Arc::new(BusStats::new("bus".into(), [])),
        )
    }

    #[test]
    fn classifies_results() {
        let ok: Result<tokio_modbus::Result<u8>, Elapsed> = Ok(Ok(Ok(1)));
        assert!(matches!(classify(ok), Outcome::Ok(1)));
        let exc: Result<tokio_modbus::Result<u8>, Elapsed> =
            Ok(Ok(Err(ExceptionCode::IllegalDataAddress)));
        assert!(matches!(
            classify(exc),
            Outcome::Exception(ExceptionCode::IllegalDataAddress)
        ));
        let crc: Result<tokio_modbus::Result<u8>, Elapsed> = Ok(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "Invalid CRC",
        )
        .into()));
        assert!(matches!(classify(crc), Outcome::BadFrame(m) if m.contains("CRC")));
        let gone: Result<tokio_modbus::Result<u8>, Elapsed> =
            Ok(Err(io::Error::from(io::ErrorKind::BrokenPipe).into()));
        assert!(matches!(classify(gone), Outcome::Lost(_)));
    }

    #[test]
    fn exception_names() {
        assert_eq!(
            exception_name(ExceptionCode::IllegalDataAddress),
            "illegal data address (exception 2)"
        );
        assert_eq!(
            exception_name(ExceptionCode::new(0x0B)),
            "gateway target device failed to respond (exception 11)"
        );
        assert_eq!(
            exception_name(ExceptionCode::new(0x42)),
            "non-standard exception (exception 66)"
        );
    }

    #[test]
    fn rtu_gap_is_three_and_a_half_characters() {
        let s = |baud, parity| SerialSettings {
            port: "/dev/null".into(),
            baud,
            data_bits: 8,
            parity,
            stop_bits: 1,
            rs485: None,
        };
        // 10 bits per character at 9600 baud: 3.5 × 10 / 9600 s.
        assert_eq!(
            inter_frame_gap(&s(9600, Parity::None)),
            Duration::from_micros(3645)
        );
        assert_eq!(
            inter_frame_gap(&s(9600, Parity::Even)),
            Duration::from_micros(4010)
        );
        assert_eq!(
            inter_frame_gap(&s(115_200, Parity::None)),
            Duration::from_micros(1750)
        );
    }

    #[tokio::test]
    async fn a_server_that_closes_the_connection_is_reported_as_such() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        });
        let mut c = connector(Transport::Tcp {
            address,
            framing: Framing::Tcp,
        });
        let mut link = c.connect().await.expect("connect");
        server.await.unwrap();
        let r = classify(Ok(link.call(1, Request::ReadHoldingRegisters(0, 1)).await));
        assert!(
            matches!(&r, Outcome::Lost(e) if e.to_string() == "the server closed the connection"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn connect_errors_are_io_errors() {
        let mut c = connector(Transport::Rtu(SerialSettings {
            port: "/dev/does-not-exist-modbus".into(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            rs485: None,
        }));
        assert!(c.connect().await.is_err());
        assert!(!c.resync_after_timeout());
        // A port nobody listens on (bound, then closed) refuses the connection.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut c = connector(Transport::Tcp {
            address: format!("127.0.0.1:{port}"),
            framing: Framing::Tcp,
        });
        assert!(c.connect().await.is_err());
        assert!(c.resync_after_timeout());
    }
}
