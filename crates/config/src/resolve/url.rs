//! Ports in the file's URLs and listen addresses: one check for every place that takes one
//! (`zoom.api_base_url`, `zoom.oauth_base_url`, `zoom.event_ws_url`, `rtms.proxy`,
//! `rtms.allowed_hosts`, `[[sink]] url`, `server.listen`, `admin.listen`), so a port past
//! 65535 is named as such rather than failing later as an unreachable address.

/// The ports a URL may name: 0 asks for no particular port, which only a listener can do.
const URL_PORTS: std::ops::RangeInclusive<u32> = 1..=65535;

/// Why the port of `url` (`scheme://[user@]host[:port][/path]`) is not usable, as the end
/// of a sentence about the URL; `None` when it names none or a valid one.
pub(super) fn url_port_problem(url: &str) -> Option<String> {
    port_problem(url_port(url)?, URL_PORTS)
}

/// Why the port of a listen address (`ip:port`, `[v6]:port`) is out of range, or `None`
/// (also when the address has no port: its parse error says what to write).
pub(super) fn listen_port_problem(addr: &str) -> Option<String> {
    let port = host_port(addr.trim()).1?;
    // 0 asks the system for a free port.
    port_problem(port, 0..=65535)
}

/// Whether `url` holds credentials (`user:password@` before its host). The file is not a
/// secret and URLs are logged and shown, so they are refused, and the error does not
/// repeat the URL.
pub(super) fn has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

/// The port written in `url`, if any.
fn url_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port(host_and_port).1
}

/// `host[:port]` or `[v6][:port]` split in two; a bare IPv6 address has no port.
pub(super) fn host_port(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[') {
        return match s.split_once(']') {
            Some((host, tail)) => (&s[..host.len() + 1], tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
}

fn port_problem(port: &str, allowed: std::ops::RangeInclusive<u32>) -> Option<String> {
    let (min, max) = (allowed.start(), allowed.end());
    if port.is_empty() {
        return Some(format!(
            "has an empty port after ':': write a port ({min} to {max}) or remove the ':'"
        ));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "has port {port:?}, which is not a number: write a port from {min} to {max}"
        ));
    }
    match port.parse::<u32>() {
        Ok(p) if allowed.contains(&p) => None,
        _ => Some(format!(
            "has port {port}, which is out of range: a port is {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_found_in_every_shape_of_url() {
        assert_eq!(url_port("ws://127.0.0.1:99999/"), Some("99999"));
        assert_eq!(url_port("http://u:p@h:81/x?y#z"), Some("81"));
        assert_eq!(url_port("wss://[::1]:443/ws"), Some("443"));
        assert_eq!(url_port("wss://[::1]/ws"), None);
        assert_eq!(url_port("https://api.zoom.us"), None);
        assert_eq!(url_port("http://h:/"), Some(""));
    }

    #[test]
    fn credentials_are_found_before_the_host_only() {
        assert!(has_credentials("http://u:p@h/x"));
        assert!(has_credentials("wss://token@h"));
        assert!(!has_credentials("http://h/path@x"));
        assert!(!has_credentials("http://h:81/?to=a@b"));
    }

    #[test]
    fn a_url_port_is_1_to_65535() {
        assert_eq!(url_port_problem("http://h:65535/"), None);
        assert_eq!(url_port_problem("http://h/"), None);
        for (url, problem) in [
            (
                "ws://127.0.0.1:99999/",
                "has port 99999, which is out of range",
            ),
            ("ws://h:0/", "has port 0, which is out of range"),
            (
                "ws://h:99999999999999999999/",
                "out of range: a port is 1 to 65535",
            ),
            ("http://h:8o/", "is not a number"),
            ("http://h:/", "has an empty port"),
        ] {
            let p = url_port_problem(url).unwrap_or_default();
            assert!(p.contains(problem), "{url}: {p}");
        }
    }

    #[test]
    fn a_listen_port_may_be_0_but_not_past_65535() {
        assert_eq!(listen_port_problem("127.0.0.1:0"), None);
        assert_eq!(listen_port_problem("[::1]:8080"), None);
        assert_eq!(listen_port_problem("localhost"), None);
        let p = listen_port_problem("127.0.0.1:99999").unwrap_or_default();
        assert!(p.contains("a port is 0 to 65535"), "{p}");
    }
}
