//! Host names and `host:port` addresses as a configuration writes them: a server to connect
//! to (an XMPP server, a Modbus TCP device), checked for shape and lower-cased.

use std::net::IpAddr;

/// Checks that `text` looks like a DNS domain (or an IP literal) and returns it lower-cased.
pub fn parse_domain(text: &str) -> Result<String, String> {
    let domain = text.strip_suffix('.').unwrap_or(text).to_lowercase();
    if domain.is_empty() {
        return Err("the domain is empty".into());
    }
    if domain.parse::<IpAddr>().is_ok() {
        return Ok(domain);
    }
    if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(domain);
        }
    }
    if domain.len() > 253 {
        return Err("a domain is at most 253 characters long".into());
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("`{text}` has an empty label (two dots in a row?)"));
        }
        if label.len() > 63 {
            return Err(format!("the label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("`{text}` is not a domain: it contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label `{label}` starts or ends with `-`"));
        }
    }
    Ok(domain)
}

/// A `host:port` pair, with the host lower-cased (IPv6 hosts in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether a host name or address is the local machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Parses `host:port`, `[v6]:port`, or a host alone (then `default_port`).
pub fn parse_host_port(text: &str, default_port: u16) -> Result<HostPort, String> {
    if text.trim() != text || text.is_empty() {
        return Err("expected `host:port`".into());
    }
    // A bare IPv6 address has colons but no port.
    if let Ok(std::net::IpAddr::V6(ip)) = text.parse::<IpAddr>() {
        return Ok(HostPort {
            host: ip.to_string(),
            port: default_port,
        });
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("`[` without `]`")?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{inner}` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
        };
        (inner.to_owned(), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (parse_domain(host)?, Some(port)),
            None => (parse_domain(text)?, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a port number (1 to 65535)")),
            Ok(port) => port,
        },
    };
    Ok(HostPort { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            parse_domain("Sensors.Example.ORG").unwrap(),
            "sensors.example.org"
        );
        assert_eq!(parse_domain("localhost").unwrap(), "localhost");
        assert_eq!(parse_domain("example.org.").unwrap(), "example.org");
        assert_eq!(parse_domain("127.0.0.1").unwrap(), "127.0.0.1");
        assert!(parse_domain("").is_err());
        assert!(parse_domain("a..b").is_err());
        assert!(parse_domain("sensors example.org").is_err());
        assert!(parse_domain("-bad.org").is_err());
        assert!(parse_domain("a@b").is_err());
    }

    #[test]
    fn host_ports() {
        let hp = parse_host_port("127.0.0.1:5347", 1).unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", 5347));
        assert!(is_loopback_host(&hp.host));
        let hp = parse_host_port("XMPP.example.org", 5222).unwrap();
        assert_eq!(hp.to_string(), "xmpp.example.org:5222");
        assert!(!is_loopback_host(&hp.host));
        let hp = parse_host_port("[::1]:5222", 1).unwrap();
        assert_eq!(hp.to_string(), "[::1]:5222");
        assert!(is_loopback_host(&hp.host));
        assert_eq!(
            parse_host_port("::1", 5222).unwrap().to_string(),
            "[::1]:5222"
        );
        assert!(is_loopback_host(
            &parse_host_port("localhost:5222", 1).unwrap().host
        ));
        assert!(is_loopback_host(
            &parse_host_port("127.8.9.10:1", 1).unwrap().host
        ));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(parse_host_port("host:0", 1).is_err());
        assert!(parse_host_port("host:99999", 1).is_err());
        assert!(parse_host_port("host:", 1).is_err());
        assert!(parse_host_port("", 1).is_err());
        assert!(parse_host_port("[nope]:1", 1).is_err());
    }
}
