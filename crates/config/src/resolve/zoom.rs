//! `[zoom]`: where the credentials come from (environment variable names, or plaintext only
//! when the operator opts in).

use super::*;

impl Resolver<'_> {
    /// The name of an environment variable given at `key` (the full dotted key, such as
    /// `zoom.client_secret_env`), or `default`; an error names the key and the fix.
    pub(super) fn env_name(
        &self,
        raw: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        match raw {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty() || v.contains(['=', '\0']) || v.contains(char::is_whitespace) {
                    return Err(self.src.invalid_at(
                        n,
                        format!("{key} = {v:?} is not an environment variable name: give the name of the variable that holds the value, such as {default:?}"),
                    ));
                }
                Ok(v.clone())
            }
            None => Ok(default.to_owned()),
        }
    }

    /// Reads a credential: the file's plaintext value if allowed, else the environment.
    pub(super) fn credential(
        &mut self,
        var: &str,
        env_key: &'static str,
        what: &'static str,
        plain: Option<&str>,
    ) -> Result<Option<String>, ConfigError> {
        if let Some(p) = plain {
            return Ok(Some(p.to_owned()));
        }
        match self.env.var(var).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(v)),
            None if self.opts.require_secrets => Err(ConfigError::MissingSecret {
                file: self.src.name.clone(),
                var: var.to_owned(),
                key: env_key,
                what,
            }),
            None => {
                self.warnings.push(format!(
                    "{what} is missing: environment variable {var} is not set (named by zoom.{env_key}); export it before running the host"
                ));
                Ok(None)
            }
        }
    }

    pub(super) fn zoom(&mut self, z: &ZoomConfig) -> Result<Zoom, ConfigError> {
        let client_id_env = self.env_name(
            &z.client_id_env,
            "zoom.client_id_env",
            default_client_id_env(),
        )?;
        let client_secret_env = self.env_name(
            &z.client_secret_env,
            "zoom.client_secret_env",
            default_client_secret_env(),
        )?;
        let webhook_secret_env = self.env_name(
            &z.webhook_secret_env,
            "zoom.webhook_secret_env",
            default_webhook_secret_env(),
        )?;
        self.refuse_plaintext_secrets(z, &client_secret_env, &webhook_secret_env)?;
        let client_id = self.credential(
            &client_id_env,
            "client_id_env",
            "the Zoom app's client id",
            z.client_id.as_ref().map(|s| s.get_ref().as_str()),
        )?;
        let client_secret = self.credential(
            &client_secret_env,
            "client_secret_env",
            "the Zoom app's client secret",
            z.client_secret.as_ref().map(|s| s.get_ref().expose()),
        )?;
        let webhook_secret = self.credential(
            &webhook_secret_env,
            "webhook_secret_env",
            "the webhook secret token",
            z.webhook_secret.as_ref().map(|s| s.get_ref().expose()),
        )?;
        let ca_file = self.ca_file(&z.ca_file)?;
        let api_base_url = self.base_url(&z.api_base_url, "api_base_url", "https://api.zoom.us")?;
        let oauth_base_url =
            self.base_url(&z.oauth_base_url, "oauth_base_url", "https://zoom.us")?;
        let (rest_env, rest) = self.rest_credentials(z)?;
        let event_ws = self.event_ws(z)?;
        Ok(Zoom {
            event_ws,
            client_id_env,
            client_secret_env,
            webhook_secret_env,
            client_id,
            client_secret: client_secret.map(Secret::new),
            webhook_secret: webhook_secret.map(Secret::new),
            ca_file,
            api_base_url,
            oauth_base_url,
            rest,
            rest_env,
        })
    }

    /// `zoom.client_secret` / `zoom.webhook_secret` in the file: only with
    /// `zoom.allow_plaintext_secrets = true`.
    fn refuse_plaintext_secrets(
        &self,
        z: &ZoomConfig,
        client_secret_env: &str,
        webhook_secret_env: &str,
    ) -> Result<(), ConfigError> {
        if z.allow_plaintext_secrets.unwrap_or(false) {
            return Ok(());
        }
        for (raw, key, env_key, var) in [
            (
                &z.client_secret,
                "client_secret",
                "client_secret_env",
                client_secret_env,
            ),
            (
                &z.webhook_secret,
                "webhook_secret",
                "webhook_secret_env",
                webhook_secret_env,
            ),
        ] {
            if let Some(s) = raw {
                return Err(self.src.invalid_at(
                    s,
                    format!("zoom.{key} holds a secret in plain text: remove it and export {var}=... instead (zoom.{env_key} names the variable), or set zoom.allow_plaintext_secrets = true if you must keep it in the file"),
                ));
            }
        }
        Ok(())
    }

    /// `zoom.ca_file`: an existing file, absolute.
    fn ca_file(&self, raw: &Option<Spanned<String>>) -> Result<Option<PathBuf>, ConfigError> {
        let Some(c) = raw else {
            return Ok(None);
        };
        let p = self.path(c.get_ref());
        if !p.is_file() {
            return Err(self.src.invalid_at(
                c,
                format!("zoom.ca_file: {} does not exist or is not a file: give a PEM certificate (relative paths are resolved against the pipeline file's folder)", p.display()),
            ));
        }
        Ok(Some(p))
    }

    /// `zoom.api_base_url` / `zoom.oauth_base_url`: an http(s) URL with a valid port, if
    /// any, without the trailing `/`.
    fn base_url(
        &self,
        raw: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        let Some(v) = raw else {
            return Ok(default.to_owned());
        };
        let s = v.get_ref().trim_end_matches('/');
        if has_credentials(s) {
            return Err(self.src.invalid_at(
                v,
                format!("zoom.{key} must not hold credentials: give the base URL alone, such as {default:?}; the REST API's credentials come from the environment (zoom.account_id_env and the like)"),
            ));
        }
        if !(s.starts_with("https://") || s.starts_with("http://")) || s.len() < 9 {
            return Err(self.src.invalid_at(
                v,
                format!("zoom.{key} = {s:?} is not a base URL: use {default:?} (or Zoom for Government's)"),
            ));
        }
        if let Some(problem) = url_port_problem(s) {
            return Err(self
                .src
                .invalid_at(v, format!("zoom.{key} = {s:?} {problem}")));
        }
        Ok(s.to_owned())
    }

    /// The REST API's Server-to-Server OAuth variables and, when all three are set, the
    /// credentials they hold.
    fn rest_credentials(
        &self,
        z: &ZoomConfig,
    ) -> Result<([String; 3], Option<RestCredentials>), ConfigError> {
        let rest_env = [
            self.env_name(&z.account_id_env, "zoom.account_id_env", "ZOOM_ACCOUNT_ID")?,
            self.env_name(
                &z.oauth_client_id_env,
                "zoom.oauth_client_id_env",
                "ZOOM_OAUTH_CLIENT_ID",
            )?,
            self.env_name(
                &z.oauth_client_secret_env,
                "zoom.oauth_client_secret_env",
                "ZOOM_OAUTH_CLIENT_SECRET",
            )?,
        ];
        let get = |v: &str| self.env.var(v).filter(|x| !x.is_empty());
        let rest = match (get(&rest_env[0]), get(&rest_env[1]), get(&rest_env[2])) {
            (Some(account_id), Some(client_id), Some(secret)) => Some(RestCredentials {
                account_id,
                client_id,
                client_secret: Secret::new(secret),
            }),
            _ => None,
        };
        Ok((rest_env, rest))
    }

    /// Zoom's event WebSocket, when `zoom.event_subscription_id` is set: a plain id and a
    /// ws(s) URL without a query, with a valid port if any.
    fn event_ws(&self, z: &ZoomConfig) -> Result<Option<EventWs>, ConfigError> {
        let Some(id) = &z.event_subscription_id else {
            return Ok(None);
        };
        let sub = id.get_ref().trim();
        if sub.is_empty()
            || !sub
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(self.src.invalid_at(
                id,
                format!("zoom.event_subscription_id = {sub:?}: give the id of the app's event subscription (letters, digits, - and _), as Zoom shows it"),
            ));
        }
        let url = match &z.event_ws_url {
            None => "wss://ws.zoom.us/ws".to_owned(),
            Some(u) => {
                let s = u.get_ref().trim();
                if has_credentials(s) {
                    return Err(self.src.invalid_at(
                        u,
                        "zoom.event_ws_url must not hold credentials: give the WebSocket URL alone, \"wss://ws.zoom.us/ws\" (the host adds a Server-to-Server OAuth token made from the credentials in the environment)",
                    ));
                }
                if !(s.starts_with("wss://") || s.starts_with("ws://")) || s.contains('?') {
                    return Err(self.src.invalid_at(
                        u,
                        format!("zoom.event_ws_url = {s:?}: give the WebSocket URL without its query, \"wss://ws.zoom.us/ws\" (Zoom for Government: \"wss://ws.zoomgov.com/ws\")"),
                    ));
                }
                if let Some(problem) = url_port_problem(s) {
                    return Err(self
                        .src
                        .invalid_at(u, format!("zoom.event_ws_url = {s:?} {problem}")));
                }
                s.to_owned()
            }
        };
        Ok(Some(EventWs {
            url,
            subscription_id: sub.to_owned(),
            heartbeat: Duration::from_secs(30),
        }))
    }
}
