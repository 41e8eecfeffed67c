//! `[[plugin]]`: one plugin's component, media, filters, granted directories and their
//! quotas, queue, batch, limits, restart policy and config table.

use super::*;

impl Resolver<'_> {
    /// `[plugin.queue] block_timeout_ms` and `[plugin.limits]` log and emit rates.
    pub(super) fn plugin_isolation(
        &self,
        p: &PluginConfig,
    ) -> Result<(Duration, u64, u64), ConfigError> {
        let block = self.num(
            &p.queue.block_timeout_ms,
            "plugin.queue.block_timeout_ms",
            default_block_timeout_ms(),
            1,
            600_000,
        )?;
        let log = self.num(
            &p.limits.log_bytes_per_sec,
            "plugin.limits.log_bytes_per_sec",
            default_log_bytes_per_sec(),
            1024,
            1 << 30,
        )?;
        let emit = self.num(
            &p.limits.emit_bytes_per_sec,
            "plugin.limits.emit_bytes_per_sec",
            default_emit_bytes_per_sec(),
            1024,
            1 << 30,
        )?;
        Ok((ms(block.n), log.n, emit.n))
    }

    /// `[plugin.net]`: the allow-list, each pattern parsed and none twice, and the limits.
    fn plugin_net(&self, raw: &NetConfig, n: &str) -> Result<crate::net::Net, ConfigError> {
        let mut http: Vec<crate::net::HttpRule> = Vec::new();
        for pat in raw.http.iter().flat_map(|l| l.get_ref()) {
            let rule = crate::net::HttpRule::parse(pat.get_ref()).map_err(|m| {
                self.src
                    .invalid_at(pat, format!("plugin {n:?}: plugin.net.http: {m}"))
            })?;
            if http.iter().any(|r| r.text == rule.text) {
                return Err(self.src.invalid_at(
                    pat,
                    format!(
                        "plugin {n:?}: plugin.net.http lists {:?} twice: remove one",
                        rule.text
                    ),
                ));
            }
            http.push(rule);
        }
        let num = |v: &Num, key: &str, default: u64, min: u64, max: u64| {
            self.num(v, key, default, min, max).map(|v| v.n)
        };
        Ok(crate::net::Net {
            http,
            allow_private: raw.allow_private.unwrap_or(false),
            connect_timeout: ms(num(
                &raw.connect_timeout_ms,
                "plugin.net.connect_timeout_ms",
                default_net_connect_timeout_ms(),
                1,
                600_000,
            )?),
            first_byte_timeout: ms(num(
                &raw.first_byte_timeout_ms,
                "plugin.net.first_byte_timeout_ms",
                default_net_first_byte_timeout_ms(),
                1,
                600_000,
            )?),
            between_bytes_timeout: ms(num(
                &raw.between_bytes_timeout_ms,
                "plugin.net.between_bytes_timeout_ms",
                default_net_between_bytes_timeout_ms(),
                1,
                600_000,
            )?),
            max_response_bytes: num(
                &raw.max_response_bytes,
                "plugin.net.max_response_bytes",
                default_net_max_response_bytes(),
                1,
                1 << 30,
            )?,
            max_concurrent: num(
                &raw.max_concurrent,
                "plugin.net.max_concurrent",
                default_net_max_concurrent(),
                1,
                1024,
            )? as u32,
            requests_per_minute: num(
                &raw.requests_per_minute,
                "plugin.net.requests_per_minute",
                default_net_requests_per_minute(),
                1,
                1_000_000,
            )? as u32,
        })
    }

    /// `[[plugin.dir]] quota_mb`: `None` for a read-only grant.
    pub(super) fn dir_quota(
        &self,
        d: &DirConfig,
        read_only: bool,
    ) -> Result<Option<u64>, ConfigError> {
        let q = self.num(
            &d.quota_mb,
            "plugin.dir.quota_mb",
            default_dir_quota_mb(),
            1,
            1 << 30,
        )?;
        Ok((!read_only).then_some(q.n))
    }

    /// Every plugin that resolves, and the error of each that does not, with its name.
    pub(super) fn plugins(
        &mut self,
        raw: &[Spanned<PluginConfig>],
    ) -> (Vec<Plugin>, Vec<(String, ConfigError)>) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut errors = Vec::new();
        for p in raw {
            let raw_name = p.get_ref().name.get_ref().clone();
            let plugin = match self.plugin(p.get_ref()) {
                Ok(plugin) => plugin,
                Err(e) => {
                    errors.push((raw_name, e));
                    continue;
                }
            };
            let name = plugin.name.as_str().to_owned();
            if let Some(first) = seen.get(&name) {
                errors.push((raw_name, self.src.invalid_at(
                    &p.get_ref().name,
                    format!("plugin name {name:?} is already used by the plugin at line {first}: plugin names must be unique"),
                )));
                continue;
            }
            seen.insert(name, self.src.at(p.get_ref().name.span().start).line);
            out.push(plugin);
        }
        (out, errors)
    }

    /// `[plugin.queue] on_full`: one policy for every kind, or a table per kind (kinds left
    /// out keep their default). Warns when one `drop-oldest` for every kind lets transcript,
    /// chat or events be dropped to make room for real-time media.
    pub(super) fn queue_policy(
        &mut self,
        p: &PluginConfig,
        n: &str,
        media: MediaKinds,
    ) -> Result<QueuePolicy, ConfigError> {
        const FIX: &str = "write \"block\", \"drop-oldest\", or one per kind such as on_full = { audio = \"drop-oldest\", transcript = \"block\" }";
        let Some(raw) = &p.queue.on_full else {
            return Ok(default_on_full(media));
        };
        let name_of = |v: &toml::Value, what: &str| -> Result<OnFull, ConfigError> {
            let msg = match v {
                toml::Value::String(s) => match OnFull::from_name(s) {
                    Some(f) => return Ok(f),
                    None => {
                        let hint = match suggest(s, ["block", "drop-oldest"]) {
                            Some(h) => format!("did you mean {h:?}? "),
                            None => String::new(),
                        };
                        format!("plugin {n:?}: {what} = {s:?} is not a queue policy: {hint}{FIX}")
                    }
                },
                other => format!("plugin {n:?}: {what} = {other} is not a queue policy: {FIX}"),
            };
            Err(self.src.invalid_at(raw, msg))
        };
        match raw.get_ref() {
            toml::Value::Table(t) => {
                if t.is_empty() {
                    return Err(self.src.invalid_at(
                        raw,
                        format!("plugin {n:?}: plugin.queue.on_full = {{}} sets nothing: name a kind, or remove the key for the default ({})", default_on_full(media).describe(media)),
                    ));
                }
                let mut policy = default_on_full(media);
                for (key, v) in t {
                    let Ok(kind) = key.parse::<MediaKind>() else {
                        let hint = match suggest(key, MediaKind::ALL.map(MediaKind::as_str)) {
                            Some(s) => format!("did you mean {s:?}? "),
                            None => String::new(),
                        };
                        return Err(self.src.invalid_at(
                            raw,
                            format!("plugin {n:?}: plugin.queue.on_full names {key:?}, which is not a kind of frame: {hint}the kinds are audio, video, share, transcript, chat, event"),
                        ));
                    };
                    if !media.contains(kind) {
                        return Err(self.src.invalid_at(
                            raw,
                            format!("plugin {n:?}: plugin.queue.on_full sets {key}, which the plugin does not take (media = {media}): remove it, or add {key:?} to media"),
                        ));
                    }
                    let f = name_of(v, &format!("plugin.queue.on_full.{key}"))?;
                    policy = policy.with(kind, f);
                }
                Ok(policy)
            }
            v => {
                let f = name_of(v, "plugin.queue.on_full")?;
                if f == OnFull::DropOldest {
                    self.warn_text_dropped(raw, n, media);
                }
                Ok(QueuePolicy::all(f))
            }
        }
    }

    /// Warns when one `drop-oldest` for every kind lets transcript, chat or events be
    /// dropped to make room for real-time media.
    fn warn_text_dropped(&mut self, raw: &Spanned<toml::Value>, n: &str, media: MediaKinds) {
        let text: Vec<&str> = media
            .iter()
            .filter(|k| !k.is_realtime_media())
            .map(MediaKind::as_str)
            .collect();
        let live: Vec<&str> = media
            .iter()
            .filter(|k| k.is_realtime_media())
            .map(MediaKind::as_str)
            .collect();
        if !text.is_empty() && !live.is_empty() {
            let at = self.src.at(raw.span().start);
            self.warnings.push(format!(
                "{at}: plugin {n:?}: on_full = \"drop-oldest\" lets {} frames be dropped to make room for {} when the plugin falls behind; to keep them, remove the key (the default drops only {}) or write on_full = {{ {} = \"drop-oldest\" }}",
                text.join(", "),
                live.join(", "),
                live.join(", "),
                live[0],
            ));
        }
    }

    pub(super) fn plugin(&mut self, p: &PluginConfig) -> Result<Plugin, ConfigError> {
        let name = PluginName::try_new(p.name.get_ref())
            .map_err(|m| self.src.invalid_at(&p.name, format!("plugin.name: {m}")))?;
        let n = name.as_str();
        let enabled = p.enabled.unwrap_or(default_enabled());
        let component = self.plugin_component(p, n, enabled)?;
        let media = self.plugin_media(p, n)?;
        let filter = PluginFilter {
            products: self.nonempty_list(&p.products, "products", n, "product")?,
            meeting_ids: self.nonempty_list(&p.meeting_ids, "meeting_ids", n, "meeting")?,
            users: self.nonempty_list(&p.users, "users", n, "user")?,
        };
        let dirs = self.plugin_dirs(p, n)?;
        let (capacity, batch) = self.plugin_batch(p)?;
        let (memory_mb, call_timeout) = self.plugin_instance_limits(p)?;
        let (max_resources, max_open_files, max_inodes) = self.plugin_resource_limits(p)?;
        let restart = self.plugin_restart(&p.restart)?;
        let (block_timeout, log_rate, emit_rate) = self.plugin_isolation(p)?;
        let on_full = self.queue_policy(p, n, media)?;
        let secrets = self.plugin_secrets(p, n)?;
        let state = self.plugin_state(p)?;
        let units_per_session = match &p.limits.units_per_session {
            None => None,
            some => Some(
                self.num(some, "plugin.limits.units_per_session", 0, 1, u64::MAX)?
                    .n,
            ),
        };
        let net = self.plugin_net(&p.net, n)?;
        let config = match &p.config {
            Some(c) => flatten_config(c.get_ref()).map_err(|m| {
                self.src
                    .invalid_at(c, format!("plugin {n:?}: [plugin.config] {m}"))
            })?,
            None => Vec::new(),
        };
        Ok(Plugin {
            name,
            component,
            enabled,
            media,
            filter,
            dirs,
            queue: Queue {
                capacity,
                on_full,
                block_timeout,
            },
            batch,
            limits: Limits {
                memory_mb,
                call_timeout,
                log_bytes_per_sec: log_rate,
                emit_bytes_per_sec: emit_rate,
                units_per_session,
                max_resources,
                max_open_files,
                max_inodes,
            },
            restart,
            secrets,
            state,
            net,
            config,
            config_at: WrittenAt(Some(match &p.config {
                Some(c) => self.src.at(c.span().start),
                None => self.src.at(p.name.span().start),
            })),
        })
    }

    /// `component`, absolute; it must exist when components are checked and the plugin runs.
    /// `builtin:NAME` names a component the binary carries, kept as written (the host says
    /// which names it has).
    fn plugin_component(
        &self,
        p: &PluginConfig,
        n: &str,
        enabled: bool,
    ) -> Result<PathBuf, ConfigError> {
        if let Some(name) = p.component.get_ref().strip_prefix(BUILTIN_PREFIX) {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(self.src.invalid_at(
                    &p.component,
                    format!("plugin {n:?}: {:?} is not a built-in component name: write builtin: and the component's name, such as builtin:transcript_writer", p.component.get_ref()),
                ));
            }
            return Ok(PathBuf::from(p.component.get_ref()));
        }
        let component = self.path(p.component.get_ref());
        if self.opts.check_components && enabled && !component.is_file() {
            return Err(self.src.invalid_at(
                &p.component,
                format!(
                    "plugin {n:?}: component {} does not exist; it may need building (cargo build --release --target wasm32-wasip2 in its workspace), or fix the path (relative paths are resolved against the pipeline file's folder)",
                    component.display()
                ),
            ));
        }
        Ok(component)
    }

    /// `media`: at least one kind.
    fn plugin_media(&self, p: &PluginConfig, n: &str) -> Result<MediaKinds, ConfigError> {
        if p.media.get_ref().is_empty() {
            return Err(self.src.invalid_at(
                &p.media,
                format!("plugin {n:?}: media = [] subscribes to nothing: list at least one of audio, video, share, transcript, chat, event"),
            ));
        }
        Ok(p.media.get_ref().iter().map(|k| *k.get_ref()).collect())
    }

    /// Every `[[plugin.dir]]`, in file order; guest paths are unique.
    fn plugin_dirs(&self, p: &PluginConfig, n: &str) -> Result<Vec<DirGrant>, ConfigError> {
        let mut dirs: Vec<DirGrant> = Vec::new();
        for d in &p.dir {
            dirs.push(self.dir_grant(d.get_ref(), n, &dirs)?);
        }
        Ok(dirs)
    }

    /// One `[[plugin.dir]]`: an absolute guest path without `..` that none of `granted`
    /// uses, and a host directory that is one or whose parent exists.
    fn dir_grant(
        &self,
        d: &DirConfig,
        n: &str,
        granted: &[DirGrant],
    ) -> Result<DirGrant, ConfigError> {
        let guest = d.guest.get_ref();
        if !guest.starts_with('/') {
            return Err(self.src.invalid_at(
                &d.guest,
                format!("plugin {n:?}: dir guest = {guest:?} is not an absolute guest path: write it as \"/{guest}\""),
            ));
        }
        if guest.split('/').any(|c| c == "..") {
            return Err(self.src.invalid_at(
                &d.guest,
                format!("plugin {n:?}: dir guest = {guest:?} may not contain \"..\": name the directory directly, such as \"/out\""),
            ));
        }
        if granted.iter().any(|g| g.guest == *guest) {
            return Err(self.src.invalid_at(
                &d.guest,
                format!("plugin {n:?}: dir guest = {guest:?} is granted twice: give each [[plugin.dir]] its own guest path"),
            ));
        }
        let host = self.path(d.host.get_ref());
        if host.exists() && !host.is_dir() {
            return Err(self.src.invalid_at(
                &d.host,
                format!("plugin {n:?}: dir host {} exists and is not a directory: point it at a directory", host.display()),
            ));
        }
        if let Some(parent) = host.parent()
            && !host.exists()
            && !parent.is_dir()
        {
            return Err(self.src.invalid_at(
                &d.host,
                format!("plugin {n:?}: dir host {}: its parent {} does not exist; the host creates the directory itself at start, but not its parents: create {} or fix the path", host.display(), parent.display(), parent.display()),
            ));
        }
        let read_only = d.read_only.unwrap_or(false);
        let symlinks = d.symlinks.unwrap_or(false);
        if read_only && symlinks {
            return Err(self.src.invalid_at(
                &d.host,
                format!("plugin {n:?}: dir {guest} is read_only and says symlinks = true: a read-only grant creates nothing; remove symlinks or read_only"),
            ));
        }
        Ok(DirGrant {
            host,
            guest: guest.clone(),
            read_only,
            quota_mb: self.dir_quota(d, read_only)?,
            symlinks,
        })
    }

    /// `[plugin.queue] capacity` and `[plugin.batch]`; a batch never holds more frames than
    /// the queue.
    fn plugin_batch(&self, p: &PluginConfig) -> Result<(usize, Batch), ConfigError> {
        let capacity = self.num(
            &p.queue.capacity,
            "plugin.queue.capacity",
            default_queue_capacity(),
            1,
            1 << 20,
        )?;
        let max_frames = self.num(
            &p.batch.max_frames,
            "plugin.batch.max_frames",
            default_batch_max_frames(),
            1,
            4096,
        )?;
        let max_wait = self.num(
            &p.batch.max_wait_ms,
            "plugin.batch.max_wait_ms",
            default_batch_max_wait_ms(),
            0,
            60_000,
        )?;
        let batch = Batch {
            max_frames: to_usize(max_frames.n.min(capacity.n)),
            max_wait: ms(max_wait.n),
        };
        Ok((to_usize(capacity.n), batch))
    }

    /// `secrets`: variable names, each at most once, read from the environment now. A
    /// missing one is an error naming it (a warning when validating without secrets).
    fn plugin_secrets(
        &mut self,
        p: &PluginConfig,
        n: &str,
    ) -> Result<Vec<PluginSecret>, ConfigError> {
        let Some(list) = &p.secrets else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PluginSecret> = Vec::new();
        for v in list.get_ref() {
            let name = v.get_ref();
            if name.is_empty() || name.contains(['=', '\0']) || name.contains(char::is_whitespace) {
                return Err(self.src.invalid_at(v, format!("plugin {n:?}: secrets entry {name:?} is not an environment variable name: name the variable that holds the secret, such as \"DEEPGRAM_API_KEY\"")));
            }
            if out.iter().any(|s| s.name == *name) {
                return Err(self.src.invalid_at(
                    v,
                    format!("plugin {n:?}: secrets names {name} twice: remove one"),
                ));
            }
            let value = self.env.var(name).filter(|x| !x.is_empty());
            if value.is_none() {
                let msg = format!(
                    "plugin {n:?}: secret {name} is missing: environment variable {name} is not set; export {name}=... before starting, or remove it from the plugin's secrets"
                );
                if self.opts.require_secrets {
                    return Err(self.src.invalid_at(v, msg));
                }
                let at = self.src.at(v.span().start);
                self.warnings.push(format!("{at}: {msg}"));
            }
            out.push(PluginSecret {
                name: name.clone(),
                value: value.map(Secret::new),
            });
        }
        Ok(out)
    }

    /// `[plugin.state]`: the bounds of each state scope.
    fn plugin_state(&self, p: &PluginConfig) -> Result<StateLimits, ConfigError> {
        let max_keys = self.num(
            &p.state.max_keys,
            "plugin.state.max_keys",
            default_state_max_keys(),
            1,
            1_000_000,
        )?;
        let max_bytes = self.num(
            &p.state.max_bytes,
            "plugin.state.max_bytes",
            default_state_max_bytes(),
            1,
            1 << 30,
        )?;
        Ok(StateLimits {
            max_keys: max_keys.n,
            max_bytes: max_bytes.n,
        })
    }

    /// `[plugin.limits]` memory_mb and call_timeout_ms: what each instance is built with.
    fn plugin_instance_limits(&self, p: &PluginConfig) -> Result<(u32, Duration), ConfigError> {
        let memory = self.num(
            &p.limits.memory_mb,
            "plugin.limits.memory_mb",
            default_memory_mb(),
            1,
            4096,
        )?;
        let call_timeout = self.num(
            &p.limits.call_timeout_ms,
            "plugin.limits.call_timeout_ms",
            default_call_timeout_ms(),
            1,
            600_000,
        )?;
        Ok((to_u32(memory.n), ms(call_timeout.n)))
    }

    /// `[plugin.limits]` max_resources, max_open_files and max_inodes: what an instance may
    /// hold and create through WASI. Open files are resources too, so there must be room
    /// for them in the table.
    fn plugin_resource_limits(&self, p: &PluginConfig) -> Result<(u32, u32, u64), ConfigError> {
        let resources = self.num(
            &p.limits.max_resources,
            "plugin.limits.max_resources",
            default_max_resources(),
            64,
            1_000_000,
        )?;
        let files = self.num(
            &p.limits.max_open_files,
            "plugin.limits.max_open_files",
            default_max_open_files(),
            1,
            65_536,
        )?;
        if files.n * 2 > resources.n {
            let (key, v) = match files.origin {
                Origin::Default => ("plugin.limits.max_resources", &resources),
                _ => ("plugin.limits.max_open_files", &files),
            };
            return Err(self.fail(key, v, &format!("leaves max_open_files ({}) above half of max_resources ({}): each open file also holds streams in the resource table; raise max_resources or lower max_open_files", files.n, resources.n)));
        }
        let inodes = self.num(
            &p.limits.max_inodes,
            "plugin.limits.max_inodes",
            default_max_inodes(),
            1,
            100_000_000,
        )?;
        Ok((to_u32(resources.n), to_u32(files.n), inodes.n))
    }

    /// `[plugin.restart]`: the backoff (its maximum at least its base), the circuit breaker
    /// and the rollback threshold.
    fn plugin_restart(&self, r: &RestartConfig) -> Result<Restart, ConfigError> {
        let base = self.num(
            &r.base_delay_ms,
            "plugin.restart.base_delay_ms",
            default_restart_base_delay_ms(),
            0,
            MAX_MS,
        )?;
        let max = self.num(
            &r.max_delay_ms,
            "plugin.restart.max_delay_ms",
            default_restart_max_delay_ms(),
            0,
            MAX_MS,
        )?;
        if max.n < base.n {
            let (key, v) = match max.origin {
                Origin::Default => ("plugin.restart.base_delay_ms", &base),
                _ => ("plugin.restart.max_delay_ms", &max),
            };
            return Err(self.fail(key, v, &format!("leaves max_delay_ms ({}) below base_delay_ms ({}): the maximum delay must be at least the base delay", max.n, base.n)));
        }
        let num = |raw: &Num, key: &str, default: u64, min: u64, max: u64| {
            self.num(raw, key, default, min, max).map(|v| v.n)
        };
        Ok(Restart {
            base_delay: ms(base.n),
            max_delay: ms(max.n),
            healthy_reset: ms(num(
                &r.healthy_reset_ms,
                "plugin.restart.healthy_reset_ms",
                default_healthy_reset_ms(),
                0,
                MAX_MS,
            )?),
            max_failures: to_u32(num(
                &r.max_failures,
                "plugin.restart.max_failures",
                default_max_failures(),
                1,
                10_000,
            )?),
            window: ms(num(
                &r.window_ms,
                "plugin.restart.window_ms",
                default_failure_window_ms(),
                1,
                MAX_MS,
            )?),
            rollback_traps: to_u32(num(
                &r.rollback_traps,
                "plugin.restart.rollback_traps",
                default_rollback_traps(),
                1,
                10_000,
            )?),
            rollback_window: ms(num(
                &r.rollback_window_ms,
                "plugin.restart.rollback_window_ms",
                default_rollback_window_ms(),
                0,
                MAX_MS,
            )?),
        })
    }
}
