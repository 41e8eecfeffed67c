//! The network and the secrets of a plugin in `rtms-host plugin test`: recorded exchanges
//! served on 127.0.0.1 instead of the services the plugin calls, and test values for its
//! secrets.
//!
//! For every origin (`scheme://host[:port]`) of the plugin's `[net] http` patterns the test
//! starts a listener on 127.0.0.1 (an [`HttpFakes`]) and runs the plugin against it:
//!
//! - every string of `[config]` (nested ones too) that starts with an origin is pointed at
//!   its listener (`https://api.example.com/v1/notes` becomes `http://127.0.0.1:PORT/v1/notes`),
//!   so a plugin that takes its service's URL from its config calls the fake unchanged;
//! - the test pipeline's `[plugin.net] http` grants the listeners, each pattern keeping its
//!   path prefix, and nothing else (a URL the plugin builds from another origin is refused,
//!   as it would be in production without a grant);
//! - the listeners answer from `[test] http` (a fakes file); a request no exchange matches is
//!   answered `404` and fails the test, naming the request and why the nearest exchange did
//!   not match; an exchange no request used fails it too. With no `[test] http`, every
//!   request is unexpected: a test never reaches the network.
//!
//! With `--record` the listeners forward each request to the real origin instead (the
//! operator's explicit permission to use the network) and `[test] http` is rewritten with
//! what was sent and received. The secrets are then the environment's values when set (the
//! real keys a real service wants), and every occurrence of such a value in the recording is
//! replaced by its test value, so the file never holds a real key and replays with the test
//! values match. Without `--record` secrets are only ever `[test.secrets]`' test values.
//!
//! `ws://` and `wss://` patterns are not served: a plugin's WebSocket opens are refused in a
//! test.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rtms_config::{HostPattern, HttpRule, HttpScheme, MapEnv};
use rtms_fakes::HttpFakes;
use rtms_fakes::recorded::{self, Answer, Forward, Seen};

use super::manifest::{FILE, Manifest};

/// The longest a recorded request may take.
const RECORD_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer a recording keeps.
const RECORD_MAX_BODY: usize = 4 << 20;

/// The fakes of one test run, and how the plugin is pointed at them.
pub struct TestNet {
    fakes: Option<HttpFakes>,
    /// (origin, the base URL of its listener).
    origins: Vec<(String, String)>,
    /// `[net] http` as the test grants it.
    grants: Vec<String>,
    /// The secrets' values in this run, and (real, test) pairs to redact when recording.
    secrets: Pairs,
    redact: Pairs,
    /// `[test] http`.
    file: Option<std::path::PathBuf>,
    record: bool,
}

/// `scheme://host[:port]` of a pattern, the port only when not the scheme's own.
fn origin(rule: &HttpRule) -> Result<String> {
    let host = match &rule.host {
        HostPattern::Name(n) => n.clone(),
        HostPattern::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        HostPattern::Ip(ip) => ip.to_string(),
        HostPattern::Wildcard(_) => bail!(
            "[net] http pattern {:?} has a wildcard: `plugin test` serves each origin it may \
             call from its own listener, so list the hosts one by one",
            rule.text
        ),
    };
    let port = if rule.port == rule.scheme.default_port() {
        String::new()
    } else {
        format!(":{}", rule.port)
    };
    Ok(format!("{}://{host}{port}", rule.scheme.as_str()))
}

/// The HTTP patterns of `[net] http`, parsed (WebSocket ones left out).
fn http_rules(m: &Manifest) -> Result<Vec<HttpRule>> {
    let Some(list) = m.net.get("http") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .with_context(|| format!("[net] http in {FILE} must be a list of URL patterns"))?;
    let mut rules = Vec::new();
    for v in list {
        let text = v
            .as_str()
            .with_context(|| format!("[net] http in {FILE}: {v} is not a string"))?;
        let rule =
            HttpRule::parse(text).map_err(|e| anyhow::anyhow!("[net] http in {FILE}: {e}"))?;
        if matches!(rule.scheme, HttpScheme::Http | HttpScheme::Https) {
            rules.push(rule);
        }
    }
    Ok(rules)
}

impl TestNet {
    /// Starts the listeners for `m`'s `[net] http` origins: replaying `[test] http`, or, with
    /// `record`, forwarding to the real services.
    pub async fn start(m: &Manifest, record: bool) -> Result<Self> {
        let rules = http_rules(m)?;
        let mut origins: Vec<String> = Vec::new();
        for r in &rules {
            let o = origin(r)?;
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
        if record && m.test.http.is_none() {
            bail!(
                "--record writes the exchanges to [test] http: set it in {} (such as http = \"fakes.jsonl\")",
                m.dir.join(FILE).display()
            );
        }
        let (secrets, redact) = secrets(m, record);
        let fakes = match (record, origins.is_empty()) {
            (_, true) => None,
            (true, false) => Some(HttpFakes::record(&origins, forwarder()?).await?),
            (false, false) => {
                let exchanges = match &m.test.http {
                    Some(p) => recorded::load(p).context(
                        "write the exchanges the plugin makes there, or record them once with \
                         `rtms-host plugin test --record`",
                    )?,
                    None => Vec::new(),
                };
                Some(HttpFakes::replay(&origins, exchanges).await?)
            }
        };
        let mut net = Self {
            origins: Vec::new(),
            grants: Vec::new(),
            secrets,
            redact,
            file: m.test.http.clone(),
            record,
            fakes: None,
        };
        if let Some(f) = &fakes {
            for o in &origins {
                let base = f.base_url(o).context("a fake listener is missing")?;
                net.origins.push((o.clone(), base));
            }
            for r in &rules {
                let base = net.base_of(&origin(r)?);
                net.grants.push(format!("{base}{}", r.path));
            }
        }
        net.fakes = fakes;
        Ok(net)
    }

    fn base_of(&self, origin: &str) -> String {
        self.origins
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    /// `m` as the test runs it: `[config]` strings and `[net] http` pointed at the listeners.
    pub fn rewrite(&self, m: &Manifest) -> Manifest {
        let mut out = m.clone();
        for (_, v) in out.config.iter_mut() {
            self.point(v);
        }
        if self.fakes.is_some() {
            out.net.insert(
                "http".into(),
                toml::Value::Array(
                    self.grants
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
        } else {
            out.net.remove("http");
        }
        out
    }

    /// Points a config value (and what it holds) at the listeners.
    fn point(&self, v: &mut toml::Value) {
        match v {
            toml::Value::String(s) => {
                if let Some(new) = self.pointed(s) {
                    *s = new;
                }
            }
            toml::Value::Array(a) => a.iter_mut().for_each(|x| self.point(x)),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| self.point(x)),
            _ => {}
        }
    }

    /// `url` with its origin replaced by the listener's, when it has one of the origins.
    fn pointed(&self, url: &str) -> Option<String> {
        for (origin, base) in &self.origins {
            // The origin as written, or with the scheme's own port spelled out.
            let (scheme, _) = origin.split_once("://")?;
            let default_port = if scheme == "https" { 443 } else { 80 };
            let spelled = format!("{origin}:{default_port}");
            for prefix in [spelled.as_str(), origin.as_str()] {
                if let Some(rest) = url.strip_prefix(prefix)
                    && (rest.is_empty() || rest.starts_with(['/', '?', '#']))
                {
                    return Some(format!("{base}{rest}"));
                }
            }
        }
        None
    }

    /// The environment the test pipeline reads the plugin's secrets from.
    pub fn env(&self) -> MapEnv {
        self.secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// After the run: the reasons the test failed (unexpected requests, unused exchanges);
    /// when recording, writes `[test] http` and says how many exchanges it holds.
    pub fn finish(self) -> Result<(Vec<String>, Option<usize>)> {
        let Some(fakes) = &self.fakes else {
            return Ok((Vec::new(), None));
        };
        if let (true, Some(path)) = (self.record, &self.file) {
            let mut text = serde_json::to_string(&fakes.recorded())?;
            for (real, test) in &self.redact {
                text = text.replace(&json_escaped(real), &json_escaped(test));
            }
            let exchanges: Vec<recorded::Exchange> = serde_json::from_str(&text)?;
            recorded::save(path, &exchanges)?;
            let problems = fakes.report().unexpected;
            return Ok((problems, Some(exchanges.len())));
        }
        let file = self.file.as_ref().map_or_else(
            || "the fakes file ([test] http)".to_string(),
            |p| p.display().to_string(),
        );
        let r = fakes.report();
        let mut problems = Vec::new();
        for u in &r.unexpected {
            problems.push(format!(
                "unexpected HTTP request {u}: add the exchange to {file}, or record it with \
                 `rtms-host plugin test --record`"
            ));
        }
        if r.more_unexpected > 0 {
            problems.push(format!(
                "{} more unexpected HTTP request(s)",
                r.more_unexpected
            ));
        }
        for (line, what) in &r.unused {
            problems.push(format!(
                "the exchange on line {line} of {file} ({what}) was never requested: remove it, \
                 or re-record with `rtms-host plugin test --record`"
            ));
        }
        Ok((problems, None))
    }
}

/// A string as it appears inside a JSON string.
fn json_escaped(s: &str) -> String {
    let q = serde_json::Value::String(s.to_owned()).to_string();
    q[1..q.len() - 1].to_owned()
}

/// (name, value) or (from, to) pairs.
type Pairs = Vec<(String, String)>;

/// The secrets' values for the run, and the (real, test) pairs to redact from a recording.
fn secrets(m: &Manifest, record: bool) -> (Pairs, Pairs) {
    let mut values = Vec::new();
    let mut redact = Vec::new();
    for (name, test) in &m.test.secrets {
        let real = record
            .then(|| std::env::var(name).ok())
            .flatten()
            .filter(|v| !v.is_empty() && v != test);
        if let Some(real) = real {
            eprintln!(
                "rtms-host: recording with {name} from the environment (written as its [test.secrets] value)"
            );
            redact.push((real.clone(), test.clone()));
            values.push((name.clone(), real));
        } else {
            values.push((name.clone(), test.clone()));
        }
    }
    // Longest first, so a secret holding another is replaced whole.
    redact.sort_by_key(|(real, _)| std::cmp::Reverse(real.len()));
    (values, redact)
}

/// Sends a recorded request to its real origin (HTTPS with the system roots).
fn forwarder() -> Result<Forward> {
    let tls = rtms_client::tls_config(None)
        .map_err(|e| anyhow::anyhow!("cannot set up TLS for --record: {e}"))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    Ok(Arc::new(move |seen: Seen| {
        let client = client.clone();
        Box::pin(async move {
            let mut req = hyper::Request::builder()
                .method(seen.method.as_str())
                .uri(seen.url.as_str());
            for (name, value) in &seen.headers {
                if name != hyper::header::HOST {
                    req = req.header(name, value);
                }
            }
            let req = req
                .body(Full::new(seen.body.clone()))
                .map_err(|e| e.to_string())?;
            let call = async {
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, RECORD_MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| {
                        format!("the answer broke off or passed {RECORD_MAX_BODY} bytes: {e}")
                    })?
                    .to_bytes();
                Ok(Answer::of(parts.status.as_u16(), &parts.headers, &body))
            };
            tokio::time::timeout(RECORD_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", RECORD_TIMEOUT.as_secs())))
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> HttpRule {
        HttpRule::parse(text).unwrap()
    }

    #[test]
    fn origins_drop_the_default_port_and_refuse_wildcards_with_the_fix() {
        assert_eq!(
            origin(&rule("https://api.example.com/v1")).unwrap(),
            "https://api.example.com"
        );
        assert_eq!(
            origin(&rule("http://127.0.0.1:8080")).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin(&rule("http://[::1]:81")).unwrap(), "http://[::1]:81");
        let e = format!("{:#}", origin(&rule("https://*.example.com")).unwrap_err());
        assert!(
            e.contains("wildcard") && e.contains("list the hosts"),
            "{e}"
        );
    }

    #[test]
    fn only_urls_of_an_origin_are_pointed_at_its_listener() {
        let net = TestNet {
            fakes: None,
            origins: vec![(
                "https://api.example.com".into(),
                "http://127.0.0.1:9".into(),
            )],
            grants: Vec::new(),
            secrets: Vec::new(),
            redact: Vec::new(),
            file: None,
            record: false,
        };
        let p = |u: &str| net.pointed(u);
        assert_eq!(
            p("https://api.example.com/v1/notes?x=1").as_deref(),
            Some("http://127.0.0.1:9/v1/notes?x=1")
        );
        assert_eq!(
            p("https://api.example.com:443/v1").as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(
            p("https://api.example.com").as_deref(),
            Some("http://127.0.0.1:9")
        );
        for other in [
            "https://api.example.com.evil/x",
            "https://api.example.com:8443/v1",
            "http://api.example.com/v1",
            "notes",
        ] {
            assert_eq!(p(other), None, "{other}");
        }
        let mut v: toml::Value =
            toml::from_str::<toml::Table>("a = { b = [\"https://api.example.com/x\", 3] }")
                .unwrap()
                .remove("a")
                .unwrap();
        net.point(&mut v);
        assert_eq!(v["b"][0].as_str(), Some("http://127.0.0.1:9/x"));
    }
}
