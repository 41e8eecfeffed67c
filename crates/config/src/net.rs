//! `[plugin.net]`: the network a plugin may reach, as an allow-list of URL patterns, and the
//! limits on its outgoing HTTP requests.
//!
//! A pattern is `scheme://host[:port][/path-prefix]`:
//! - `scheme` is `http` or `https`, or `ws` or `wss` for the plugin's WebSockets (a `ws`
//!   pattern allows only WebSockets, an `http` one only HTTP requests);
//! - `host` is a name (matched exactly, without case), a name with a leading `*.` (any name
//!   ending in `.rest`, not `rest` itself), an IPv4 address, or an IPv6 address in brackets;
//!   an IP literal in a request matches only a pattern naming that address;
//! - `port` defaults to the scheme's (80, 443);
//! - `path-prefix` matches on segment boundaries: `/v1` allows `/v1` and `/v1/x`, not `/v10`.
//!
//! Nothing here resolves names: whether a name's addresses are public is the host's check
//! at request time.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// `[plugin.net]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    /// `http`: the URLs the plugin may call; empty denies every request (the default).
    pub http: Vec<HttpRule>,
    /// `allow_private`: names may resolve to loopback, private, link-local or unique-local
    /// addresses. Off by default: only a pattern naming such an address reaches it.
    pub allow_private: bool,
    /// `connect_timeout_ms`: name resolution, TCP connect and TLS handshake, each.
    pub connect_timeout: Duration,
    /// `first_byte_timeout_ms`: from the request sent to the response's head.
    pub first_byte_timeout: Duration,
    /// `between_bytes_timeout_ms`: longest silence within a response body.
    pub between_bytes_timeout: Duration,
    /// `max_response_bytes`: a response body past this fails the read.
    pub max_response_bytes: u64,
    /// `max_concurrent`: requests in flight at once, over all sessions of the plugin.
    pub max_concurrent: u32,
    /// `requests_per_minute`: requests started per minute, over all sessions of the plugin.
    pub requests_per_minute: u32,
}

impl Net {
    /// Whether any request is allowed at all.
    pub fn enabled(&self) -> bool {
        !self.http.is_empty()
    }

    /// The first rule that allows this request, if any. `host` is as the URL writes it
    /// (brackets around IPv6 allowed); `path` may carry a query.
    pub fn allows(
        &self,
        scheme: &str,
        host: &str,
        port: Option<u16>,
        path: &str,
    ) -> Option<&HttpRule> {
        self.http
            .iter()
            .find(|r| r.matches(scheme, host, port, path))
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpScheme {
    Http,
    Https,
    /// A plain WebSocket (`ws://`).
    Ws,
    /// A WebSocket over TLS (`wss://`).
    Wss,
}

impl HttpScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
            HttpScheme::Ws => "ws",
            HttpScheme::Wss => "wss",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http | HttpScheme::Ws => 80,
            HttpScheme::Https | HttpScheme::Wss => 443,
        }
    }
}

/// The host part of a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this name (lower case, no trailing dot).
    Name(String),
    /// Any name ending in `.` + this (lower case): `*.example.com` holds `example.com`.
    Wildcard(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One allow-list pattern, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpRule {
    pub scheme: HttpScheme,
    pub host: HostPattern,
    pub port: u16,
    /// `""` for any path, else `/a/b` without a trailing slash.
    pub path: String,
    /// The pattern as written, for messages.
    pub text: String,
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const FORM: &str = "write scheme://host[:port][/path-prefix], such as \"https://api.example.com/v1\", \"https://*.example.com\", \"http://127.0.0.1:8080\" or \"wss://api.example.com/v1/listen\"";

impl HttpRule {
    /// Parses a pattern; the error names the problem and the fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("{text:?} {why}: {FORM}"));
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("has no scheme");
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => HttpScheme::Http,
            "https" => HttpScheme::Https,
            "ws" => HttpScheme::Ws,
            "wss" => HttpScheme::Wss,
            _ => return bad("has a scheme other than http, https, ws or wss"),
        };
        if rest.contains(['?', '#']) {
            return bad("has a query or fragment, which a pattern cannot match");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return bad("carries credentials (user@); a pattern names only where requests go");
        }
        let (host, port) =
            split_host_port(authority).map_err(|why| format!("{text:?} {why}: {FORM}"))?;
        let host = parse_host(host).map_err(|why| format!("{text:?} {why}: {FORM}"))?;
        let path = parse_path(path).map_err(|why| format!("{text:?} {why}: {FORM}"))?;
        Ok(Self {
            scheme,
            host,
            port: port.unwrap_or(scheme.default_port()),
            path,
            text: text.to_owned(),
        })
    }

    /// Whether a request to `scheme://host:port/path` is allowed by this rule.
    pub fn matches(&self, scheme: &str, host: &str, port: Option<u16>, path: &str) -> bool {
        if !scheme.eq_ignore_ascii_case(self.scheme.as_str()) {
            return false;
        }
        if port.unwrap_or(self.scheme.default_port()) != self.port {
            return false;
        }
        self.host_matches(host) && path_matches(&self.path, path)
    }

    fn host_matches(&self, host: &str) -> bool {
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>()
            .ok();
        match (&self.host, ip) {
            (HostPattern::Ip(want), Some(got)) => *want == got,
            (_, Some(_)) | (HostPattern::Ip(_), None) => false,
            (HostPattern::Name(want), None) => normal_name(host) == *want,
            (HostPattern::Wildcard(suffix), None) => {
                let h = normal_name(host);
                h.len() > suffix.len() + 1
                    && h.ends_with(suffix.as_str())
                    && h.as_bytes()[h.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err("has an IPv6 address without its closing bracket");
        };
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err("has a port that is not a number from 1 to 65535"),
        },
        None => None,
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<HostPattern, &'static str> {
    if host.is_empty() {
        return Err("has no host");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(ip));
    }
    let (wild, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let name = normal_name(name);
    if name.contains('*') {
        return Err("has a `*` other than a leading `*.`");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err("has a host that is not a DNS name or an IP address");
    }
    if wild && !name.contains('.') {
        return Err(
            "has a wildcard over a whole top-level domain; name the domain, such as *.example.com",
        );
    }
    Ok(if wild {
        HostPattern::Wildcard(name)
    } else {
        HostPattern::Name(name)
    })
}

fn parse_path(path: &str) -> Result<String, &'static str> {
    if path.contains('%') || path.contains('\\') {
        return Err("has a path with escapes or backslashes; write the path plainly");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err("has a path with `.` or `..` segments");
    }
    Ok(path.trim_end_matches('/').to_owned())
}

/// Whether a request path (with its query, if any) lies under `prefix` on a segment
/// boundary. A request path with `.` or `..` segments, or escaped dots, slashes or
/// backslashes, lies under no prefix but the empty one: the server might resolve them out
/// of it.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
    {
        return false;
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> HttpRule {
        HttpRule::parse(s).unwrap()
    }

    #[test]
    fn scheme_host_port_and_path_prefix_on_segment_boundaries() {
        let r = rule("https://api.example.com/v1");
        assert!(r.matches("https", "api.example.com", None, "/v1"));
        assert!(r.matches("https", "API.example.com.", Some(443), "/v1/x?q=1"));
        assert!(!r.matches("https", "api.example.com", None, "/v10"));
        assert!(!r.matches("https", "api.example.com", None, "/"));
        assert!(!r.matches("http", "api.example.com", None, "/v1"));
        assert!(!r.matches("https", "api.example.com", Some(8443), "/v1"));
        assert!(!r.matches("https", "api.example.com", None, "/v1/../admin"));
        assert!(!r.matches("https", "api.example.com", None, "/v1/%2e%2e/admin"));
        assert!(!r.matches("https", "evil.com", None, "/v1"));
    }

    #[test]
    fn websocket_patterns_allow_only_websockets() {
        let r = rule("wss://api.example.com/v1/listen");
        assert!(r.matches(
            "wss",
            "api.example.com",
            Some(443),
            "/v1/listen?encoding=linear16"
        ));
        assert!(!r.matches("https", "api.example.com", None, "/v1/listen"));
        assert!(!r.matches("ws", "api.example.com", None, "/v1/listen"));
        assert!(!rule("https://api.example.com").matches("wss", "api.example.com", None, "/"));
        assert_eq!(rule("ws://127.0.0.1").port, 80);
    }

    #[test]
    fn a_wildcard_holds_subdomains_but_not_the_domain_itself() {
        let r = rule("https://*.example.com");
        assert!(r.matches("https", "a.example.com", None, "/"));
        assert!(r.matches("https", "a.b.example.com", None, "/x"));
        assert!(!r.matches("https", "example.com", None, "/"));
        assert!(!r.matches("https", "badexample.com", None, "/"));
    }

    #[test]
    fn ip_literals_match_only_a_pattern_naming_them() {
        let by_name = rule("http://localhost:8080");
        assert!(!by_name.matches("http", "127.0.0.1", Some(8080), "/"));
        let by_ip = rule("http://127.0.0.1:8080");
        assert!(by_ip.matches("http", "127.0.0.1", Some(8080), "/"));
        assert!(!by_ip.matches("http", "localhost", Some(8080), "/"));
        let v6 = rule("http://[::1]:9000/x");
        assert!(v6.matches("http", "[::1]", Some(9000), "/x/y"));
    }

    #[test]
    fn bad_patterns_name_the_problem() {
        for (p, why) in [
            ("api.example.com", "has no scheme"),
            ("ftp://x.com", "other than http, https, ws or wss"),
            ("https://u:p@x.com", "credentials"),
            ("https://x.com:0", "port"),
            ("https://x.com:99999", "port"),
            ("https://*.com", "top-level"),
            ("https://a.*.com", "`*`"),
            ("https://", "no host"),
            ("https://x.com/a/../b", "`..`"),
            ("https://x.com/?a=1", "query"),
            ("https://ex ample.com", "not a DNS name"),
        ] {
            let e = HttpRule::parse(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
            assert!(e.contains("scheme://host"), "{p}: {e}");
        }
    }
}
