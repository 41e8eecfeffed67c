//! `[server]` (the webhook listener, its limits and TLS) and `[admin]` (the admin listener
//! and its token).

use super::*;

impl Resolver<'_> {
    /// A listen address: an IP and a port (0 for any free one); a port past 65535 is named.
    fn listen_addr(
        &self,
        raw: &Spanned<String>,
        key: &str,
        example: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let v = raw.get_ref();
        v.trim().parse().map_err(|_| {
            let msg = match listen_port_problem(v) {
                Some(problem) => format!("{key} = {v:?} {problem}"),
                None => format!(
                    "{key} = {v:?} is not a socket address: write an IP and a port such as \"{example}\" (host names are not resolved)"
                ),
            };
            self.src.invalid_at(raw, msg)
        })
    }

    pub(super) fn server(&self, s: &ServerConfig) -> Result<Server, ConfigError> {
        if let Some(old) = &s.admin {
            return Err(self.src.invalid_at(
                old,
                "server.admin was replaced by the [admin] section: the admin routes now have their own listener. Remove server.admin and write `[admin]` with `enabled = true` or `false` (admin.listen defaults to \"127.0.0.1:9464\"; admin.token_env names the bearer token's variable, RTMS_ADMIN_TOKEN by default)".to_owned(),
            ));
        }
        let listen: SocketAddr = match &s.listen {
            Some(l) => self.listen_addr(l, "server.listen", "127.0.0.1:8080")?,
            None => default_listen().parse().map_err(|_| {
                self.src
                    .invalid(0..0, "internal: bad default listen address")
            })?,
        };
        let webhook_path = match &s.webhook_path {
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') {
                    return Err(self.src.invalid_at(
                        p,
                        format!("server.webhook_path = {v:?} must start with '/': write \"/{v}\""),
                    ));
                }
                if v.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                    return Err(self.src.invalid_at(
                        p,
                        format!("server.webhook_path = {v:?} may not contain spaces, '?' or '#': give the plain path Zoom posts to"),
                    ));
                }
                v.clone()
            }
            None => default_webhook_path().to_owned(),
        };
        let max_body = self.num(
            &s.max_body_bytes,
            "server.max_body_bytes",
            default_max_body_bytes(),
            1024,
            64 * 1024 * 1024,
        )?;
        let window = self.num(
            &s.timestamp_window_secs,
            "server.timestamp_window_secs",
            default_timestamp_window_secs(),
            1,
            3600,
        )?;
        let (max_connections, header_timeout, body_timeout, tls) = self.server_limits(s)?;
        let per_peer = self.num(
            &s.max_connections_per_peer,
            "server.max_connections_per_peer",
            default_max_connections_per_peer(),
            1,
            1_000_000,
        )?;
        Ok(Server {
            listen,
            webhook_path,
            max_body_bytes: to_usize(max_body.n),
            timestamp_window: Duration::from_secs(window.n),
            max_connections,
            max_connections_per_peer: to_usize(per_peer.n),
            header_timeout,
            body_timeout,
            tls,
            zoom_app: s.zoom_app.unwrap_or(false),
        })
    }

    /// `[server]` connection limits and `[server.tls]`.
    pub(super) fn server_limits(
        &self,
        s: &ServerConfig,
    ) -> Result<(usize, Duration, Duration, Option<ServerTls>), ConfigError> {
        let conns = self.num(
            &s.max_connections,
            "server.max_connections",
            default_max_connections(),
            1,
            1_000_000,
        )?;
        let header = self.num(
            &s.header_timeout_ms,
            "server.header_timeout_ms",
            default_header_timeout_ms(),
            100,
            600_000,
        )?;
        let body = self.num(
            &s.body_timeout_ms,
            "server.body_timeout_ms",
            default_body_timeout_ms(),
            100,
            600_000,
        )?;
        let tls = self.tls(s.tls.as_ref(), "server.tls")?;
        Ok((to_usize(conns.n), ms(header.n), ms(body.n), tls))
    }

    /// `[server.tls]` or `[admin.tls]`: both files must exist.
    fn tls(
        &self,
        t: Option<&Spanned<TlsConfig>>,
        section: &str,
    ) -> Result<Option<ServerTls>, ConfigError> {
        let Some(t) = t else {
            return Ok(None);
        };
        let t = t.get_ref();
        let file = |f: &Spanned<String>, key: &str| {
            let p = self.path(f.get_ref());
            if p.is_file() {
                Ok(p)
            } else {
                Err(self.src.invalid_at(
                    f,
                    format!("{section}.{key}: {} does not exist or is not a file: give a PEM file (relative paths are resolved against the pipeline file's folder)", p.display()),
                ))
            }
        };
        Ok(Some(ServerTls {
            cert: file(&t.cert, "cert")?,
            key: file(&t.key, "key")?,
        }))
    }

    /// `[admin]`, and the refusal of the `[server] admin` key it replaced. An enabled listener
    /// bound beyond loopback needs a token, even when validating without secrets.
    pub(super) fn admin(&self, a: &AdminConfig) -> Result<Admin, ConfigError> {
        let listen: SocketAddr = match &a.listen {
            Some(l) => self.listen_addr(l, "admin.listen", default_admin_listen())?,
            None => default_admin_listen().parse().map_err(|_| {
                self.src
                    .invalid(0..0, "internal: bad default admin address")
            })?,
        };
        let token_env = match &a.token_env {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty() || v.contains(['=', '\0']) || v.contains(char::is_whitespace) {
                    return Err(self.src.invalid_at(
                        n,
                        format!("admin.token_env = {v:?} is not an environment variable name: give the name of the variable that holds the token, such as {:?}", default_admin_token_env()),
                    ));
                }
                v.clone()
            }
            None => default_admin_token_env().to_owned(),
        };
        let interval = self.num(
            &a.reload_min_interval_ms,
            "admin.reload_min_interval_ms",
            default_reload_min_interval_ms(),
            0,
            MAX_MS,
        )?;
        let token = self.env.var(&token_env).filter(|t| !t.is_empty());
        let admin = Admin {
            enabled: a.enabled.unwrap_or(default_admin_enabled()),
            listen,
            token: token.clone().map(Secret::new),
            token_env,
            reload_min_interval: ms(interval.n),
            tls: self.tls(a.tls.as_ref(), "admin.tls")?,
        };
        let at = a.listen.as_ref().map_or(0..0, Spanned::span);
        if let Some(problem) = token.as_deref().and_then(weak_token) {
            return Err(self.src.invalid(
                at,
                format!(
                    "the admin token in environment variable {} (named by admin.token_env) {problem}: set it to a long random value, such as the output of `openssl rand -hex 32`",
                    admin.token_env
                ),
            ));
        }
        if admin.enabled && admin.exposed() && token.is_none() {
            return Err(self.src.invalid(
                at,
                format!(
                    "admin.listen = \"{listen}\" is reachable beyond this machine but no admin token is set: export {}=<a long random value> (named by admin.token_env), or bind admin.listen to a loopback address such as \"{}\", or set admin.enabled = false",
                    admin.token_env,
                    default_admin_listen()
                ),
            ));
        }
        Ok(admin)
    }
}

/// What makes an admin bearer token too weak to accept, or `None`. The token itself is
/// never part of the answer.
fn weak_token(token: &str) -> Option<String> {
    if token.trim().is_empty() {
        return Some("is only whitespace".to_owned());
    }
    if token.contains(char::is_whitespace) {
        // Clients send the token after `Bearer ` and the header is trimmed: a space, tab or
        // newline (often a file's last line end) makes a token no request can present.
        return Some("contains whitespace, which a bearer token cannot carry".to_owned());
    }
    if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
        return Some(format!("is shorter than {MIN_ADMIN_TOKEN_LEN} characters"));
    }
    let distinct = token.chars().collect::<std::collections::BTreeSet<char>>();
    if distinct.len() < MIN_ADMIN_TOKEN_DISTINCT {
        return Some(format!(
            "has fewer than {MIN_ADMIN_TOKEN_DISTINCT} distinct characters, a pattern that is guessed at once"
        ));
    }
    None
}
