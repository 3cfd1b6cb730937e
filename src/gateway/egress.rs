//! The egress proxy: HTTP CONNECT (and plain `http://` requests in absolute form) from a live
//! launch to the hosts on the allow list — by default the package registries the agent CLIs and
//! setup scripts install from. `CODECOURIER_EGRESS=open` lifts the list, never the rule that keeps
//! unlisted hosts on loopback, private and link-local addresses out of reach.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::grants::LiveGrant;
use super::listener::{basic_password, empty, strip_hop_by_hop, text, Body};
use super::Shared;

/// The registries the agent CLIs and setup scripts need: npm, PyPI and its files, crates.io with
/// its index and downloads, Go's module proxy and checksum database.
pub const REGISTRIES: [&str; 8] = [
    "registry.npmjs.org",
    "pypi.org",
    "files.pythonhosted.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One allow-list entry: `host`, `*.suffix` (any name below it), each with an optional `:port`
/// (without one, every port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase; for a suffix pattern, what follows `*.`.
    host: String,
    any_below: bool,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("\"{text}\": the port is not a number from 1 to 65535")
                })?;
                (name, Some(port))
            }
            None => (text.as_str(), None),
        };
        let (host, any_below) = match name.strip_prefix("*.") {
            Some(suffix) => (suffix, true),
            None => (name, false),
        };
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "\"{text}\" is not a host name, *.suffix or either with :port"
            ));
        }
        Ok(Self {
            host: host.to_string(),
            any_below,
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let name_matches = if self.any_below {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        } else {
            host == self.host
        };
        name_matches && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any_below {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Which hosts a sandbox may reach through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Any host with public addresses, besides the list (`CODECOURIER_EGRESS=open`).
    pub open: bool,
    pub allow: Vec<HostPattern>,
}

impl EgressPolicy {
    /// The registries and `extra` (`CODECOURIER_EGRESS_ALLOW`).
    pub fn registries_and(extra: &[HostPattern], open: bool) -> Self {
        let mut allow: Vec<HostPattern> = REGISTRIES
            .iter()
            .map(|h| HostPattern::parse(h).expect("the built-in registries are host names"))
            .collect();
        allow.extend(extra.iter().cloned());
        Self { open, allow }
    }

    fn listed(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|p| p.matches(host, port))
    }

    fn list_text(&self) -> String {
        self.allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Before resolving: is the name one this sandbox may ask for at all?
    fn admits_name(&self, host: &str, port: u16) -> Result<(), String> {
        if self.open || self.listed(host, port) {
            return Ok(());
        }
        Err(format!(
            "CodeCourier's egress proxy refused {host}:{port}: it is not on the allow list ({}). The operator can add hosts with CODECOURIER_EGRESS_ALLOW.",
            self.list_text()
        ))
    }

    /// After resolving: a listed name goes wherever it resolves (an operator's own registry may
    /// be on the LAN); any other name only to public addresses.
    fn admits_addresses(&self, host: &str, port: u16, addrs: &[IpAddr]) -> Result<(), String> {
        if self.listed(host, port) {
            return Ok(());
        }
        match addrs.iter().find(|ip| !is_public(ip)) {
            None => Ok(()),
            Some(ip) => Err(format!(
                "CodeCourier's egress proxy refused {host}:{port}: it resolves to {ip}, a loopback, private or link-local address, which only a listed host may (CODECOURIER_EGRESS_ALLOW)"
            )),
        }
    }
}

/// Whether an address is on the internet rather than this machine, its LAN or a link.
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Why a proxy request is not carried, as its answer says it.
struct Refused {
    status: StatusCode,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut response = text(self.status, &self.message);
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            response.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"CodeCourier egress\""),
            );
        }
        response
    }
}

/// The launch whose placeholder is the proxy password, or the 407 that asks for it.
fn authorize(shared: &Shared, request: &Request<Incoming>) -> Result<Arc<LiveGrant>, Refused> {
    basic_password(request.headers().get(header::PROXY_AUTHORIZATION))
        .and_then(|placeholder| shared.grants.lookup(&placeholder))
        .ok_or_else(|| {
            Refused::new(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "CodeCourier's egress proxy needs a live launch's placeholder as the proxy password (HTTPS_PROXY as CodeCourier set it)",
            )
        })
}

/// Host (lowercase, without brackets or a trailing dot) and port of a proxy target.
fn target(uri: &Uri, default_port: Option<u16>) -> Option<(String, u16)> {
    let authority = uri.authority()?;
    let port = authority.port_u16().or(default_port)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some((host, port))
}

/// Checks the target against the policy, resolves it once and connects to what was checked.
async fn open(policy: &EgressPolicy, host: &str, port: u16) -> Result<TcpStream, Refused> {
    policy
        .admits_name(host, port)
        .map_err(|why| Refused::new(StatusCode::FORBIDDEN, why))?;
    let unreachable = |why: String| {
        Refused::new(
            StatusCode::BAD_GATEWAY,
            format!("CodeCourier's egress proxy cannot reach {host}:{port}: {why}"),
        )
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("the name did not resolve in time".into())),
        };
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    policy
        .admits_addresses(host, port, &ips)
        .map_err(|why| Refused::new(StatusCode::FORBIDDEN, why))?;
    let mut last_error = "the name has no addresses".to_string();
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "the connection timed out".into(),
        }
    }
    Err(unreachable(last_error))
}

/// The live launch and a connection to the target it may reach, or the answer that refuses.
async fn authorize_and_open(
    shared: &Shared,
    request: &Request<Incoming>,
    default_port: Option<u16>,
) -> Result<(Arc<LiveGrant>, TcpStream), Refused> {
    let live = authorize(shared, request)?;
    let (host, port) = target(request.uri(), default_port).ok_or_else(|| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "the request names no host:port target",
        )
    })?;
    match open(&shared.egress, &host, port).await {
        Ok(stream) => {
            tracing::debug!(launch = %live.grant.label, %host, port, "gateway: egress");
            Ok((live, stream))
        }
        Err(refused) => {
            tracing::info!(launch = %live.grant.label, %host, port, status = refused.status.as_u16(), "gateway: egress refused");
            Err(refused)
        }
    }
}

/// CONNECT host:port: answers 200 once the target is connected, then carries bytes both ways
/// until either side closes or the launch's grant ends.
pub(super) async fn connect(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let (live, mut upstream) = match authorize_and_open(shared, &request, None).await {
        Ok(opened) => opened,
        Err(refused) => return refused.into_response(),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let mut client = TokioIo::new(upgraded);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = live.revoked.cancelled() => {}
        }
    });
    Response::new(empty())
}

/// A plain `http://` request in absolute form, sent on to a connection the policy allowed.
pub(super) async fn forward_http(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.uri().scheme_str() != Some("http") {
        return text(
            StatusCode::BAD_REQUEST,
            "CodeCourier's egress proxy forwards only http:// requests; use CONNECT for https",
        );
    }
    let (live, stream) = match authorize_and_open(shared, &request, Some(80)).await {
        Ok(opened) => opened,
        Err(refused) => return refused.into_response(),
    };
    let (host, port) = target(request.uri(), Some(80)).expect("checked when opened");
    let (mut parts, body) = request.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .expect("a path and query is a valid origin-form URI");
    strip_hop_by_hop(&mut parts.headers);
    if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        parts.headers.insert(header::HOST, authority);
    }
    let gateway_error = |why: String| {
        text(
            StatusCode::BAD_GATEWAY,
            &format!("CodeCourier's egress proxy: {host}:{port} {why}"),
        )
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return gateway_error(format!("did not speak HTTP ({e})")),
        };
    let revoked = live.revoked.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = connection => {}
            _ = revoked.cancelled() => {}
        }
    });
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
        }
        Err(e) => gateway_error(format!("broke off ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_names_suffixes_and_ports() {
        assert!(pattern("Registry.npmjs.org").matches("registry.npmjs.org", 443));
        assert!(!pattern("registry.npmjs.org").matches("evil-registry.npmjs.org", 443));
        let below = pattern("*.example.com:8443");
        assert!(below.matches("a.b.example.com", 8443));
        assert!(!below.matches("example.com", 8443));
        assert!(!below.matches("badexample.com", 8443));
        assert!(!below.matches("a.example.com", 443));
        assert_eq!(below.to_string(), "*.example.com:8443");
        for bad in [
            "",
            "*.",
            "a..b",
            "host:0",
            "host:99999",
            "exa mple.com",
            "http://x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_list_admits_its_names_and_names_itself_when_it_refuses() {
        let policy = EgressPolicy::registries_and(&[pattern("git.internal:3000")], false);
        assert!(policy.admits_name("registry.npmjs.org", 443).is_ok());
        assert!(policy.admits_name("git.internal", 3000).is_ok());
        let why = policy.admits_name("example.com", 443).unwrap_err();
        assert!(why.contains("example.com:443"), "{why}");
        assert!(why.contains("registry.npmjs.org, pypi.org"), "{why}");
        assert!(why.contains("git.internal:3000"), "{why}");
        let local: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(policy
            .admits_addresses("git.internal", 3000, &[local])
            .is_ok());
    }

    #[test]
    fn open_admits_any_public_host_but_no_unlisted_local_address() {
        let policy = EgressPolicy::registries_and(&[], true);
        assert!(policy.admits_name("example.com", 443).is_ok());
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        assert!(policy
            .admits_addresses("example.com", 443, &[public])
            .is_ok());
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = local.parse().unwrap();
            let why = policy
                .admits_addresses("sneaky.example", 80, &[public, ip])
                .unwrap_err();
            assert!(why.contains(local), "{why}");
        }
    }
}
