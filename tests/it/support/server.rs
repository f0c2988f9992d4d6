//! One interoperability test body, run against every XMPP server the gateway supports.
//!
//! [`Server`] is a private Prosody or ejabberd behind the calls the tests make; [`per_server!`]
//! turns `async fn name(kind: Kind)` into one `#[tokio::test]` per server (`name::prosody`,
//! `name::ejabberd`), so a failure names the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ejabberd::{Ejabberd, EjabberdOpts};
use super::prosody::{Prosody, ProsodyOpts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prosody,
    Ejabberd,
}

/// What a test needs hosted. Both servers host MUC and pubsub when asked (ejabberd always
/// does: the documented snippet enables them).
#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    components: usize,
    muc: bool,
    pubsub: bool,
}

impl ServerOpts {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more component with a random domain (`gw-<random>.localhost`) and secret.
    pub fn random_component(mut self) -> Self {
        self.components += 1;
        self
    }

    pub fn muc(mut self) -> Self {
        self.muc = true;
        self
    }

    pub fn pubsub(mut self) -> Self {
        self.pubsub = true;
        self
    }
}

/// The address and domain a client logs in to (for [`TestClient`](super::TestClient)).
pub trait C2s {
    fn c2s_addr(&self) -> SocketAddr;
    fn domain(&self) -> &str;
}

impl C2s for Prosody {
    fn c2s_addr(&self) -> SocketAddr {
        Prosody::c2s_addr(self)
    }
    fn domain(&self) -> &str {
        Prosody::domain(self)
    }
}

impl C2s for Ejabberd {
    fn c2s_addr(&self) -> SocketAddr {
        Ejabberd::c2s_addr(self)
    }
    fn domain(&self) -> &str {
        Ejabberd::domain(self)
    }
}

impl C2s for Server {
    fn c2s_addr(&self) -> SocketAddr {
        Server::c2s_addr(self)
    }
    fn domain(&self) -> &str {
        Server::domain(self)
    }
}

pub enum Server {
    Prosody(Prosody),
    Ejabberd(Ejabberd),
}

/// Calls the same method on whichever server it is.
macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Server::Prosody($s) => $e,
            Server::Ejabberd($s) => $e,
        }
    };
}

impl Server {
    pub async fn start(kind: Kind, opts: ServerOpts) -> Server {
        match kind {
            Kind::Prosody => {
                let mut p = ProsodyOpts::new();
                for _ in 0..opts.components {
                    p = p.random_component();
                }
                if opts.muc {
                    p = p.muc();
                }
                if opts.pubsub {
                    p = p.pubsub();
                }
                Server::Prosody(Prosody::start(p).await)
            }
            Kind::Ejabberd => {
                let mut e = EjabberdOpts::new();
                for _ in 0..opts.components {
                    e = e.random_component();
                }
                Server::Ejabberd(Ejabberd::start(e).await)
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Server::Prosody(_) => Kind::Prosody,
            Server::Ejabberd(_) => Kind::Ejabberd,
        }
    }

    pub async fn register(&self, user: &str, pass: &str) {
        both!(self, s => s.register(user, pass).await)
    }

    pub async fn restart(&mut self) {
        both!(self, s => s.restart().await)
    }

    pub async fn stop(&mut self) {
        both!(self, s => s.stop().await)
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        both!(self, s => s.c2s_addr())
    }

    pub fn component_addr(&self) -> SocketAddr {
        both!(self, s => s.component_addr())
    }

    pub fn domain(&self) -> &str {
        both!(self, s => s.domain())
    }

    pub fn component_domain(&self) -> &str {
        both!(self, s => s.component_domain())
    }

    pub fn component_toml(&self, domain: &str) -> String {
        both!(self, s => s.component_toml(domain))
    }

    pub fn muc_domain(&self) -> &str {
        both!(self, s => s.muc_domain())
    }

    pub fn pubsub_domain(&self) -> &str {
        both!(self, s => s.pubsub_domain())
    }

    pub fn ca_path(&self) -> PathBuf {
        both!(self, s => s.ca_path().to_path_buf())
    }

    pub fn dir(&self) -> &Path {
        both!(self, s => s.dir())
    }

    pub fn log_text(&self) -> String {
        both!(self, s => s.log_text())
    }
}

/// `per_server!(name);` after `async fn name(kind: Kind)`: a test module `name` with one
/// `#[tokio::test]` per server.
#[macro_export]
macro_rules! per_server {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn prosody() {
                super::$name($crate::support::server::Kind::Prosody).await
            }
            #[tokio::test]
            async fn ejabberd() {
                super::$name($crate::support::server::Kind::Ejabberd).await
            }
        }
    )+};
}
