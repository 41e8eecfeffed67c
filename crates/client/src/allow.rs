//! The allow-list of RTMS server URLs: which hosts the host may open a WebSocket to.
//!
//! A webhook's `server_urls` and the media URLs of the signaling reply (msg 2) name the
//! servers the host connects to, with its handshake signature. Both are checked against an
//! [`AllowList`] before any connection: by default only `wss://` on Zoom's hosts
//! (`*.zoom.us`, and `*.zoomgov.com` for Zoom for Government). Plain `ws://` needs an
//! explicit opt-in (the simulator in tests and the demo).
//!
//! URLs are parsed with the same parser the WebSocket connector uses (`http::Uri`), so what
//! is checked is what would be connected to.

use std::fmt;

/// The pipeline key listing the allowed hosts.
pub const HOSTS_KEY: &str = "rtms.allowed_hosts";
/// The pipeline key that allows plain `ws://`.
pub const INSECURE_KEY: &str = "rtms.allow_insecure_ws";

/// Zoom's RTMS hosts, the default.
pub const ZOOM_HOSTS: [&str; 2] = ["*.zoom.us", "*.zoomgov.com"];

/// One allowed host: exact (`127.0.0.1`, `rtms.example.com`) or every subdomain of a domain
/// (`*.zoom.us` matches `a.zoom.us` and `a.b.zoom.us`, not `zoom.us`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Suffix(String),
}

/// Which URLs may be connected to.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<Pattern>,
    insecure_ws: bool,
}

impl Default for AllowList {
    /// Zoom's hosts over `wss://` only.
    fn default() -> Self {
        Self::zoom()
    }
}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .patterns
            .iter()
            .map(|p| match p {
                Pattern::Exact(h) => h.clone(),
                Pattern::Suffix(d) => format!("*.{d}"),
            })
            .collect();
        f.debug_struct("AllowList")
            .field("hosts", &hosts)
            .field("insecure_ws", &self.insecure_ws)
            .finish()
    }
}

/// Why a URL is not allowed. The message names the URL (cut short), the reason and the
/// pipeline key to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("{url:?} is not a URL with a host; RTMS servers are wss://<host>/...")]
    NotAUrl { url: String },
    #[error(
        "{url:?} uses scheme {scheme:?}; only wss:// is allowed (set {INSECURE_KEY} = true to allow ws://)"
    )]
    Scheme { url: String, scheme: String },
    #[error("{url:?}: host {host:?} is not allowed (add it to {HOSTS_KEY})")]
    Host { url: String, host: String },
    #[error(
        "{url:?}: port {port:?} is out of range; a port is a number from 1 to 65535 (fix the URL, or leave the port out for the scheme's default, 443 for wss://)"
    )]
    Port { url: String, port: String },
}

impl AllowList {
    /// Zoom's hosts, `wss://` only.
    pub fn zoom() -> Self {
        Self::new(ZOOM_HOSTS, false).expect("the Zoom patterns are valid")
    }

    /// An allow-list of host patterns (exact hosts, or `*.domain`); `insecure_ws` also
    /// allows `ws://`. Errors name the bad pattern.
    pub fn new<S: AsRef<str>>(
        hosts: impl IntoIterator<Item = S>,
        insecure_ws: bool,
    ) -> Result<Self, String> {
        let patterns = hosts
            .into_iter()
            .map(|h| Self::pattern(h.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            patterns,
            insecure_ws,
        })
    }

    /// The simulator's hosts (`127.0.0.1`, `localhost`), `ws://` and `wss://`: for tests
    /// and the demo.
    pub fn loopback() -> Self {
        Self::new(["127.0.0.1", "localhost"], true).expect("valid patterns")
    }

    fn pattern(h: &str) -> Result<Pattern, String> {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{h:?} is not a host pattern: {why}"));
        if h.is_empty() {
            return bad("it is empty");
        }
        if let Some(domain) = h.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') || !domain.contains('.') {
                return bad("write *.<domain>.<tld>, such as \"*.zoom.us\"");
            }
            return Ok(Pattern::Suffix(domain.to_owned()));
        }
        if h.contains(['*', '/', ':', '@', ' ']) && !h.starts_with('[') {
            return bad("write a host name or an IP address, or *.<domain> for its subdomains");
        }
        Ok(Pattern::Exact(h))
    }

    /// Whether `ws://` is allowed.
    pub fn insecure_ws(&self) -> bool {
        self.insecure_ws
    }

    /// Checks a URL before connecting to it.
    pub fn check(&self, url: &str) -> Result<(), UrlRefused> {
        let shown = || rtms_proto::text::truncated(url, 200).into_owned();
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| UrlRefused::NotAUrl { url: shown() })?;
        let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "wss" => {}
            "ws" if self.insecure_ws => {}
            _ => {
                return Err(UrlRefused::Scheme {
                    url: shown(),
                    scheme: rtms_proto::text::truncated(&scheme, 20).into_owned(),
                });
            }
        }
        // `http::Uri` accepts any digits as a port and then reports none when they do not
        // fit a u16, so the authority's own text is read.
        if let Some(port) = uri.authority().and_then(|a| port_text(a.as_str()))
            && !port.is_empty()
            && !port.parse::<u16>().is_ok_and(|p| p != 0)
        {
            return Err(UrlRefused::Port {
                url: shown(),
                port: rtms_proto::text::truncated(port, 20).into_owned(),
            });
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UrlRefused::NotAUrl { url: shown() })?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ok = self.patterns.iter().any(|p| match p {
            Pattern::Exact(e) => *e == host,
            Pattern::Suffix(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        });
        if ok {
            Ok(())
        } else {
            Err(UrlRefused::Host {
                url: shown(),
                host: rtms_proto::text::truncated(&host, 100).into_owned(),
            })
        }
    }
}

/// The port of an authority (`user@host:port`, `[v6]:port`) as written, if it names one.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_v6 = host_port.rfind(']').map_or(0, |i| i + 1);
    let (_, port) = host_port[after_v6..].rsplit_once(':')?;
    Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_hosts_over_wss_are_allowed_by_default() {
        let a = AllowList::default();
        assert_eq!(a.check("wss://rtms.zoom.us/sig"), Ok(()));
        assert_eq!(a.check("wss://sjc.rtms.zoom.us:443/x?y=1"), Ok(()));
        assert_eq!(a.check("wss://RTMS.ZOOMGOV.COM./a"), Ok(()));
    }

    #[test]
    fn everything_else_is_refused_with_the_key_to_change() {
        let a = AllowList::default();
        for (url, key) in [
            ("not a url", "wss://"),
            ("ws://rtms.zoom.us/sig", INSECURE_KEY),
            ("http://rtms.zoom.us/sig", INSECURE_KEY),
            ("wss://zoom.us/sig", HOSTS_KEY),
            ("wss://evilzoom.us/sig", HOSTS_KEY),
            ("wss://rtms.zoom.us.evil.com/sig", HOSTS_KEY),
            ("wss://rtms.zoom.us@evil.com/sig", HOSTS_KEY),
            ("wss://127.0.0.1:9/sig", HOSTS_KEY),
            ("wss:///sig", "wss://"),
        ] {
            let e = a.check(url).unwrap_err().to_string();
            assert!(e.contains(key), "{url}: {e}");
        }
    }

    #[test]
    fn loopback_allows_the_simulator_over_ws_and_wss() {
        let a = AllowList::loopback();
        assert_eq!(a.check("ws://127.0.0.1:4000/sig"), Ok(()));
        assert_eq!(a.check("wss://localhost:4000/sig"), Ok(()));
        assert!(a.check("wss://rtms.zoom.us/sig").is_err());
        assert!(a.check("ws://127.0.0.2/sig").is_err());
    }

    #[test]
    fn a_port_out_of_range_is_refused_with_the_fix() {
        let a = AllowList::loopback();
        for (url, port) in [
            ("ws://127.0.0.1:99999/", "99999"),
            ("ws://127.0.0.1:65536/sig", "65536"),
            ("wss://localhost:0/sig", "0"),
            (
                "wss://localhost:18446744073709551616/sig",
                "18446744073709551616",
            ),
        ] {
            let e = a.check(url).unwrap_err();
            assert_eq!(
                e,
                UrlRefused::Port {
                    url: url.to_owned(),
                    port: port.to_owned()
                },
                "{url}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains("out of range") && msg.contains("1 to 65535"),
                "{msg}"
            );
        }
        assert_eq!(a.check("ws://127.0.0.1:65535/sig"), Ok(()));
        assert_eq!(a.check("ws://127.0.0.1:1/sig"), Ok(()));
        assert_eq!(
            a.check("ws://localhost/sig"),
            Ok(()),
            "no port: the default"
        );
        assert_eq!(
            a.check("ws://localhost:/sig"),
            Ok(()),
            "empty port: the default"
        );
        assert_eq!(port_text("[::1]:8080"), Some("8080"));
        assert_eq!(port_text("[::1]"), None);
        assert_eq!(port_text("u:p@h:7"), Some("7"));
        // The default list too: the port is checked whatever the host.
        let e = AllowList::default()
            .check("wss://rtms.zoom.us:70000/sig")
            .unwrap_err();
        assert!(matches!(e, UrlRefused::Port { .. }), "{e}");
    }

    #[test]
    fn bad_patterns_are_named() {
        for p in ["", "*", "*.", "*.com", "a*b.com", "http://x.com"] {
            let e = AllowList::new([p], false).unwrap_err();
            assert!(e.contains("not a host pattern"), "{p}: {e}");
        }
    }

    #[test]
    fn long_urls_are_cut_in_messages() {
        let url = format!("wss://evil.com/{}", "a".repeat(5000));
        let e = AllowList::default().check(&url).unwrap_err().to_string();
        assert!(e.len() < 400, "{}", e.len());
    }
}
