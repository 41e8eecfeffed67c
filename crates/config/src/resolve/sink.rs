//! `[[sink]]`: where emitted outputs go, and the plugins, kinds and severities each takes.

use super::*;

impl Resolver<'_> {
    /// Every sink that resolves, and the error of each that does not. `failed` names
    /// plugins of the file that did not resolve: a sink may name them (their own error is
    /// reported).
    pub(super) fn sinks(
        &self,
        raw: &[Spanned<SinkConfig>],
        plugins: &[Plugin],
        failed: &[String],
    ) -> (Vec<Sink>, Vec<ConfigError>) {
        if raw.is_empty() {
            let mut stdout = Sink::all(SinkTarget::Stdout);
            stdout.filter.min_severity = default_min_severity();
            let stdout = vec![stdout];
            return (stdout, Vec::new());
        }
        let mut sinks = Vec::new();
        let mut errors = Vec::new();
        for s in raw {
            match self.sink(s, plugins, failed) {
                Ok(sink) => sinks.push(sink),
                Err(e) => errors.push(e),
            }
        }
        (sinks, errors)
    }

    pub(super) fn sink(
        &self,
        s: &Spanned<SinkConfig>,
        plugins: &[Plugin],
        failed: &[String],
    ) -> Result<Sink, ConfigError> {
        let c = s.get_ref();
        let target = match c.kind {
            SinkType::Stdout => {
                if let Some(extra) = c.path.as_ref().or(c.url.as_ref()) {
                    return Err(self.src.invalid_at(extra, "a sink of type \"stdout\" takes no path or url: remove it, or set type = \"jsonl\" / \"http\""));
                }
                SinkTarget::Stdout
            }
            SinkType::Jsonl => {
                if let Some(u) = &c.url {
                    return Err(self.src.invalid_at(u, "a sink of type \"jsonl\" takes a path, not a url: remove url, or set type = \"http\""));
                }
                let Some(p) = &c.path else {
                    return Err(self.src.invalid_at(
                        s,
                        "a sink of type \"jsonl\" needs a file: add path = \"out/outputs.jsonl\"",
                    ));
                };
                SinkTarget::Jsonl {
                    path: self.path(p.get_ref()),
                }
            }
            SinkType::Http => {
                if let Some(p) = &c.path {
                    return Err(self.src.invalid_at(p, "a sink of type \"http\" takes a url, not a path: remove path, or set type = \"jsonl\""));
                }
                let Some(u) = &c.url else {
                    return Err(self.src.invalid_at(s, "a sink of type \"http\" needs an endpoint: add url = \"http://127.0.0.1:9000/alerts\""));
                };
                SinkTarget::Http {
                    url: self.http_sink_url(u)?,
                }
            }
        };
        let sink_plugins = match &c.plugins {
            Some(list) => {
                let mut names = Vec::new();
                for p in list {
                    let name = p.get_ref();
                    match plugins.iter().find(|q| q.name.as_str() == name) {
                        Some(q) => names.push(q.name.clone()),
                        None if failed.contains(name) => {}
                        None => {
                            let hint = suggest(name, plugins.iter().map(|q| q.name.as_str()))
                                .map(|s| format!("; did you mean {s:?}?"))
                                .unwrap_or_default();
                            return Err(self.src.invalid_at(
                                p,
                                format!("sink.plugins: no plugin is named {name:?}{hint}"),
                            ));
                        }
                    }
                }
                Some(names)
            }
            None => None,
        };
        let (queue_bytes, delivery) = self.sink_bounds(c)?;
        Ok(Sink {
            target,
            filter: SinkFilter {
                min_severity: c.min_severity.unwrap_or(default_min_severity()),
                plugins: sink_plugins,
                kinds: c.kinds.clone(),
            },
            queue_bytes,
            delivery,
        })
    }

    /// A sink's `queue_mb` (in bytes) and an http sink's timeouts and retries.
    fn sink_bounds(&self, c: &SinkConfig) -> Result<(u64, Delivery), ConfigError> {
        let q = self.num(
            &c.queue_mb,
            "sink.queue_mb",
            default_sink_queue_mb(),
            1,
            4096,
        )?;
        let connect = self.num(
            &c.connect_timeout_ms,
            "sink.connect_timeout_ms",
            default_sink_connect_timeout_ms(),
            10,
            60_000,
        )?;
        let request = self.num(
            &c.request_timeout_ms,
            "sink.request_timeout_ms",
            default_sink_request_timeout_ms(),
            10,
            300_000,
        )?;
        let retries = self.num(&c.retries, "sink.retries", default_sink_retries(), 0, 10)?;
        let backoff = self.num(
            &c.retry_backoff_ms,
            "sink.retry_backoff_ms",
            default_sink_retry_backoff_ms(),
            1,
            60_000,
        )?;
        Ok((
            q.n << 20,
            Delivery {
                connect_timeout: ms(connect.n),
                request_timeout: ms(request.n),
                retries: to_u32(retries.n),
                retry_backoff: ms(backoff.n),
            },
        ))
    }

    /// An http sink's `url`: plain `http://`, no credentials, a valid port if any.
    fn http_sink_url(&self, u: &Spanned<String>) -> Result<String, ConfigError> {
        let url = u.get_ref();
        if has_credentials(url) {
            return Err(self.src.invalid_at(
                u,
                "sink.url must not hold credentials (pipeline.toml is not a secret, and sink URLs are logged): give the endpoint without user:password@, such as a collector on loopback",
            ));
        }
        let rest = url.strip_prefix("http://");
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(self.src.invalid_at(
                u,
                format!("sink.url = {url:?} is not an http:// URL: only plain http:// endpoints are supported for now (for https, put a TLS proxy on loopback in front of it)"),
            ));
        }
        if let Some(problem) = url_port_problem(url) {
            return Err(self
                .src
                .invalid_at(u, format!("sink.url = {url:?} {problem}")));
        }
        Ok(url.clone())
    }
}
