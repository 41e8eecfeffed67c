//! `[cluster]`: the engine's URL and credentials, this host's name, the lease and its
//! renewal, the webhook log's windows, the drain bound and the placement rule.

use super::*;

/// Zoom keeps a stream's media slot about 30 s: a lease, its renewal and the reconnection
/// of the host that takes the stream over must fit in it.
const MAX_LEASE_MS: u64 = 20_000;
/// Zoom retries a webhook for about 90 minutes.
const MIN_DEDUP_WINDOW_MS: u64 = 90 * 60 * 1000;

/// A name the engine can carry in subjects, stream and bucket names.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Resolver<'_> {
    pub(super) fn cluster(
        &self,
        c: &Option<Spanned<ClusterConfig>>,
    ) -> Result<Option<Cluster>, ConfigError> {
        let Some(section) = c else {
            return Ok(None);
        };
        let c = section.get_ref();
        let nats_url = self.nats_url(section)?;
        let host_id = self.cluster_name(&c.host_id, "host_id", 64, "\"host-a\"")?;
        let prefix = self
            .cluster_name(&c.prefix, "prefix", 32, "\"rtms\"")?
            .unwrap_or_else(|| default_cluster_prefix().to_owned());
        let lease = self.num(
            &c.lease_ms,
            "cluster.lease_ms",
            default_lease_ms(),
            1_000,
            MAX_LEASE_MS,
        )?;
        let renew = self.num(
            &c.renew_ms,
            "cluster.renew_ms",
            lease.n / 3,
            100,
            lease.n / 2,
        )?;
        let ack_wait = self.num(
            &c.ack_wait_ms,
            "cluster.ack_wait_ms",
            default_ack_wait_ms(),
            1_000,
            300_000,
        )?;
        let dedup = self.num(
            &c.dedup_window_ms,
            "cluster.dedup_window_ms",
            default_dedup_window_ms(),
            MIN_DEDUP_WINDOW_MS,
            86_400_000,
        )?;
        let drain = self.num(
            &c.drain_ms,
            "cluster.drain_ms",
            default_drain_ms(),
            0,
            600_000,
        )?;
        let (auth, auth_env) = self.cluster_auth(section)?;
        Ok(Some(Cluster {
            nats_url,
            host_id,
            prefix,
            lease: ms(lease.n),
            renew: ms(renew.n),
            ack_wait: ms(ack_wait.n),
            dedup_window: ms(dedup.n),
            drain: ms(drain.n),
            placement: c.placement.unwrap_or(Placement::LeastLoaded),
            auth,
            auth_env,
        }))
    }

    /// `cluster.nats_url`: required; `nats://` or `tls://` URLs, no credentials.
    fn nats_url(&self, section: &Spanned<ClusterConfig>) -> Result<String, ConfigError> {
        let Some(raw) = &section.get_ref().nats_url else {
            return Err(self.src.invalid(
                section.span(),
                "[cluster] needs nats_url, the NATS server with JetStream the hosts share, such as \"nats://127.0.0.1:4222\" (remove the section to run one host alone)",
            ));
        };
        let text = raw.get_ref().trim();
        for url in text.split(',').map(str::trim) {
            if has_credentials(url) {
                return Err(self.src.invalid_at(
                    raw,
                    "cluster.nats_url must not hold credentials: give the URL alone and name the variables that hold them with cluster.user_env and cluster.password_env, or cluster.token_env",
                ));
            }
            let rest = url
                .strip_prefix("nats://")
                .or_else(|| url.strip_prefix("tls://"));
            let problem = match rest {
                None => {
                    Some("is not a NATS URL: write \"nats://host:4222\" (or tls://)".to_owned())
                }
                Some(r) if r.is_empty() || r.contains('/') => {
                    Some("is not a NATS URL: write \"nats://host:4222\", with no path".to_owned())
                }
                Some(_) => url_port_problem(url),
            };
            if let Some(problem) = problem {
                return Err(self
                    .src
                    .invalid_at(raw, format!("cluster.nats_url = {url:?} {problem}")));
            }
        }
        Ok(text.to_owned())
    }

    /// `cluster.host_id` / `cluster.prefix`: letters, digits, `-` and `_`.
    fn cluster_name(
        &self,
        raw: &Option<Spanned<String>>,
        key: &str,
        max: usize,
        example: &str,
    ) -> Result<Option<String>, ConfigError> {
        let Some(v) = raw else { return Ok(None) };
        if !is_name(v.get_ref(), max) {
            return Err(self.src.invalid_at(
                v,
                format!(
                    "cluster.{key} = {:?}: use 1 to {max} letters, digits, '-' or '_', such as {example} (it becomes part of the engine's subject and bucket names)",
                    v.get_ref()
                ),
            ));
        }
        Ok(Some(v.get_ref().clone()))
    }

    /// The engine's credentials from the environment: a user and password, a token, or none.
    fn cluster_auth(
        &self,
        section: &Spanned<ClusterConfig>,
    ) -> Result<(ClusterAuth, [String; 3]), ConfigError> {
        let c = section.get_ref();
        let names = [
            self.env_name(&c.user_env, "cluster.user_env", "RTMS_NATS_USER")?,
            self.env_name(
                &c.password_env,
                "cluster.password_env",
                "RTMS_NATS_PASSWORD",
            )?,
            self.env_name(&c.token_env, "cluster.token_env", "RTMS_NATS_TOKEN")?,
        ];
        let get = |n: &str| self.env.var(n).filter(|v| !v.is_empty());
        // The values are secrets: the message names the variables only.
        let fail = |message: String| self.src.invalid(section.span(), message);
        let auth = match (get(&names[0]), get(&names[1]), get(&names[2])) {
            (None, None, None) => ClusterAuth::None,
            (Some(user), Some(password), None) => ClusterAuth::UserPassword {
                user,
                password: Secret::new(password),
            },
            (None, None, Some(token)) => ClusterAuth::Token(Secret::new(token)),
            (Some(_), None, None) | (None, Some(_), None) => {
                return Err(fail(format!(
                    "[cluster]: the engine's user and password go together: export both {} and {}, or neither",
                    names[0], names[1]
                )));
            }
            _ => {
                return Err(fail(format!(
                    "[cluster]: export either a user and password ({} and {}) or a token ({}) for the engine, not both",
                    names[0], names[1], names[2]
                )));
            }
        };
        Ok((auth, names))
    }
}
