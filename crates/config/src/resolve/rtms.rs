//! `[rtms]`: resilience numbers and their `RTMS_*` overrides, the intake bounds (allow-list,
//! `max_streams`), the media to request and their parameters.

use super::*;

impl Resolver<'_> {
    /// `[rtms]` allowed_hosts, allow_insecure_ws and max_streams.
    pub(super) fn rtms_intake(
        &self,
        r: &RtmsConfig,
    ) -> Result<(Vec<String>, bool, usize), ConfigError> {
        let hosts = match &r.allowed_hosts {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.src.invalid_at(
                        list,
                        "rtms.allowed_hosts is empty: no stream could ever connect; list hosts such as \"*.zoom.us\"",
                    ));
                }
                let mut out = Vec::new();
                for h in list.get_ref() {
                    let v = h.get_ref().trim().to_ascii_lowercase();
                    if let Some(problem) = allowed_host_problem(&v) {
                        return Err(self
                            .src
                            .invalid_at(h, format!("rtms.allowed_hosts: {v:?} {problem}")));
                    }
                    out.push(v);
                }
                out
            }
            None => default_allowed_hosts().map(str::to_owned).to_vec(),
        };
        let hosts = match self.env.var(ALLOWED_HOSTS_ENV) {
            Some(value) => self.allowed_hosts_from_env(&value)?,
            None => hosts,
        };
        let insecure = match self.env.var(ALLOW_INSECURE_WS_ENV) {
            Some(value) => match value.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ConfigError::EnvOverride {
                        file: self.src.name.clone(),
                        var: ALLOW_INSECURE_WS_ENV.to_owned(),
                        value,
                        key: "rtms.allow_insecure_ws".to_owned(),
                        message: "not a boolean: write true or false".to_owned(),
                    });
                }
            },
            None => r.allow_insecure_ws.unwrap_or(false),
        };
        let max = self.num(
            &r.max_streams,
            "rtms.max_streams",
            default_max_streams(),
            1,
            1_000_000,
        )?;
        Ok((hosts, insecure, to_usize(max.n)))
    }

    /// `RTMS_ALLOWED_HOSTS`: a comma-separated list that replaces `rtms.allowed_hosts`.
    fn allowed_hosts_from_env(&self, value: &str) -> Result<Vec<String>, ConfigError> {
        let bad = |message: String| ConfigError::EnvOverride {
            file: self.src.name.clone(),
            var: ALLOWED_HOSTS_ENV.to_owned(),
            value: value.to_owned(),
            key: "rtms.allowed_hosts".to_owned(),
            message,
        };
        let hosts: Vec<String> = value
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            return Err(bad(
                "empty: no stream could ever connect; list hosts such as *.zoom.us".to_owned(),
            ));
        }
        for h in &hosts {
            if let Some(problem) = allowed_host_problem(h) {
                return Err(bad(format!("{h:?} {problem}")));
            }
        }
        Ok(hosts)
    }

    pub(super) fn rtms(
        &mut self,
        r: &RtmsConfig,
        raw_plugins: &[&Spanned<PluginConfig>],
        plugins: &[Plugin],
    ) -> Result<Rtms, ConfigError> {
        let (connection_timeout, connection_max_attempts, connection_retry_delay) =
            self.rtms_connection(r)?;
        let (reconnect_max_attempts, reconnect_base_delay, reconnect_max_delay) =
            self.rtms_reconnect(r)?;
        let (keepalive_interval, keepalive_timeout) = self.rtms_keepalive(r)?;
        let webhook_wait = self.rtms_num(
            &r.webhook_wait_timeout_ms,
            "webhook_wait_timeout_ms",
            default_webhook_wait_timeout_ms(),
            1000,
            MAX_MS,
        )?;
        // What enabled plugins subscribe to: what is requested when rtms.media is not set.
        let mut wanted = MediaKinds::EMPTY;
        for p in plugins.iter().filter(|p| p.enabled) {
            wanted = wanted.union(p.media);
        }
        let media = self.requested_media(r, raw_plugins, plugins, wanted)?;
        let events = self.rtms_events(r, wanted)?;
        let mut media_params = self.media_params(r, media)?;
        let video_following = self.video_mode(r, media, &mut media_params)?;
        let (reconnect_jitter_percent, reconnect_healthy_after, stop_drain) = self.outage(r)?;
        let (reconnect_flap_max, reconnect_flap_window) = self.flap(r)?;
        let close_timeout = self.close_timeout(r)?;
        let (allowed_hosts, allow_insecure_ws, max_streams) = self.rtms_intake(r)?;
        Ok(Rtms {
            connection_timeout,
            connection_max_attempts,
            connection_retry_delay,
            reconnect_max_attempts,
            reconnect_base_delay,
            reconnect_max_delay,
            reconnect_jitter_percent,
            reconnect_healthy_after,
            reconnect_flap_max,
            reconnect_flap_window,
            stop_drain,
            close_timeout,
            keepalive_interval,
            keepalive_timeout,
            webhook_wait_timeout: ms(webhook_wait.n),
            media,
            socket_mode: r.socket_mode.unwrap_or(default_socket_mode()),
            buffer_data: r.buffer_data.unwrap_or(default_buffer_data()),
            ws_ping: r.ws_ping.unwrap_or(false),
            events,
            media_params,
            allowed_hosts,
            allow_insecure_ws,
            max_streams,
            proxy: self.proxy(&r.proxy)?,
            video_following,
        })
    }

    /// `[rtms]` connection_timeout_ms, connection_max_attempts and
    /// connection_retry_delay_ms: the first connection of a stream.
    fn rtms_connection(&self, r: &RtmsConfig) -> Result<(Duration, u32, Duration), ConfigError> {
        let timeout = self.rtms_num(
            &r.connection_timeout_ms,
            "connection_timeout_ms",
            default_connection_timeout_ms(),
            100,
            MAX_MS,
        )?;
        let attempts = self.rtms_num(
            &r.connection_max_attempts,
            "connection_max_attempts",
            default_connection_max_attempts(),
            1,
            1000,
        )?;
        let retry_delay = self.rtms_num(
            &r.connection_retry_delay_ms,
            "connection_retry_delay_ms",
            default_connection_retry_delay_ms(),
            0,
            MAX_MS,
        )?;
        Ok((ms(timeout.n), to_u32(attempts.n), ms(retry_delay.n)))
    }

    /// `[rtms]` reconnect_max_attempts and the reconnection backoff, whose maximum is at
    /// least its base.
    fn rtms_reconnect(&self, r: &RtmsConfig) -> Result<(u32, Duration, Duration), ConfigError> {
        let attempts = self.rtms_num(
            &r.reconnect_max_attempts,
            "reconnect_max_attempts",
            default_reconnect_max_attempts(),
            0,
            1000,
        )?;
        let base = self.rtms_num(
            &r.reconnect_base_delay_ms,
            "reconnect_base_delay_ms",
            default_reconnect_base_delay_ms(),
            0,
            MAX_MS,
        )?;
        let max = self.rtms_num(
            &r.reconnect_max_delay_ms,
            "reconnect_max_delay_ms",
            default_reconnect_max_delay_ms(),
            0,
            MAX_MS,
        )?;
        if max.n < base.n {
            let (key, v, other) = match max.origin {
                Origin::Default => (
                    "rtms.reconnect_base_delay_ms",
                    &base,
                    format!("reconnect_max_delay_ms ({})", max.n),
                ),
                _ => (
                    "rtms.reconnect_max_delay_ms",
                    &max,
                    format!("reconnect_base_delay_ms ({})", base.n),
                ),
            };
            let msg = if key.ends_with("max_delay_ms") {
                format!("is below {other}: the maximum delay must be at least the base delay")
            } else {
                format!("is above {other}: the base delay must not exceed the maximum delay")
            };
            return Err(self.fail(key, v, &msg));
        }
        Ok((to_u32(attempts.n), ms(base.n), ms(max.n)))
    }

    /// `[rtms]` keepalive_interval_ms and keepalive_timeout_ms; the timeout is above the
    /// interval.
    fn rtms_keepalive(&self, r: &RtmsConfig) -> Result<(Duration, Duration), ConfigError> {
        let interval = self.rtms_num(
            &r.keepalive_interval_ms,
            "keepalive_interval_ms",
            default_keepalive_interval_ms(),
            MIN_KEEPALIVE_INTERVAL_MS,
            MAX_MS,
        )?;
        let timeout = self.rtms_num(
            &r.keepalive_timeout_ms,
            "keepalive_timeout_ms",
            default_keepalive_timeout_ms(),
            1,
            MAX_MS,
        )?;
        if timeout.n <= interval.n {
            let err = match timeout.origin {
                Origin::Default => self.fail(
                    "rtms.keepalive_interval_ms",
                    &interval,
                    &format!("is not below keepalive_timeout_ms ({}, the default): set keepalive_timeout_ms above the interval, e.g. to {}", timeout.n, interval.n.saturating_mul(3)),
                ),
                _ => self.fail(
                    "rtms.keepalive_timeout_ms",
                    &timeout,
                    &format!("must be greater than keepalive_interval_ms ({}): raise it, e.g. to {} (three intervals)", interval.n, interval.n.saturating_mul(3)),
                ),
            };
            return Err(err);
        }
        Ok((ms(interval.n), ms(timeout.n)))
    }

    /// `rtms.media`: the explicit list, which must cover what enabled plugins subscribe
    /// to, or else `wanted` (events aside: they are not a media stream).
    fn requested_media(
        &self,
        r: &RtmsConfig,
        raw_plugins: &[&Spanned<PluginConfig>],
        plugins: &[Plugin],
        wanted: MediaKinds,
    ) -> Result<MediaKinds, ConfigError> {
        let Some(list) = &r.media else {
            let mut w = wanted;
            w.remove(MediaKind::Event);
            return Ok(w);
        };
        let mut set = MediaKinds::EMPTY;
        for k in list.get_ref() {
            if *k.get_ref() == MediaKind::Event {
                return Err(self.src.invalid_at(
                    k,
                    "rtms.media: \"event\" is not a media stream (events arrive on the signaling socket): remove it and list event subscriptions in rtms.events",
                ));
            }
            set.insert(*k.get_ref());
        }
        for (raw, p) in raw_plugins.iter().zip(plugins) {
            let mut needs = p.media;
            needs.remove(MediaKind::Event);
            if p.enabled && !needs.is_subset(set) {
                let missing: MediaKinds = needs.iter().filter(|k| !set.contains(*k)).collect();
                return Err(self.src.invalid_at(
                    &raw.get_ref().media,
                    format!("plugin {:?} subscribes to {missing} but rtms.media {} does not request it: add it to rtms.media, or remove rtms.media to request what plugins subscribe to", p.name.as_str(), set),
                ));
            }
        }
        Ok(set)
    }

    /// `rtms.events`: names or numbers, in file order without duplicates; by default the
    /// usual events when a plugin takes events, else none.
    fn rtms_events(&self, r: &RtmsConfig, wanted: MediaKinds) -> Result<Vec<u32>, ConfigError> {
        let Some(list) = &r.events else {
            return Ok(if wanted.contains(MediaKind::Event) {
                default_events()
            } else {
                Vec::new()
            });
        };
        let names = event_names();
        let mut out = Vec::new();
        for e in list {
            let n = self.event_number(e, &names)?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// One `rtms.events` entry as its EVENT_TYPE number.
    fn event_number(
        &self,
        e: &Spanned<EventSpec>,
        names: &BTreeMap<&'static str, u32>,
    ) -> Result<u32, ConfigError> {
        match e.get_ref() {
            EventSpec::Name(name) => match names.get(name.as_str()) {
                Some(n) => Ok(*n),
                None => {
                    let hint = suggest(name, names.keys().copied())
                        .map(|s| format!("did you mean {s:?}? "))
                        .unwrap_or_default();
                    let all: Vec<&str> = names.keys().copied().collect();
                    Err(self.src.invalid_at(
                        e,
                        format!("rtms.events: unknown event {name:?}: {hint}use one of {} or an EVENT_TYPE number", all.join(", ")),
                    ))
                }
            },
            EventSpec::Number(n) => match u32::try_from(*n) {
                Ok(n @ 1..=255) => Ok(n),
                _ => Err(self.src.invalid_at(
                    e,
                    format!("rtms.events: {n} is not an EVENT_TYPE number (allowed: 1 to 255)"),
                )),
            },
        }
    }

    /// `rtms.proxy`: "env", "none" or an http:// URL without credentials.
    fn proxy(&self, raw: &Option<Spanned<String>>) -> Result<Proxy, ConfigError> {
        let Some(v) = raw else {
            return Ok(Proxy::Env);
        };
        let s = v.get_ref().trim();
        match s {
            "env" => return Ok(Proxy::Env),
            "none" => return Ok(Proxy::None),
            _ => {}
        }
        let Some(rest) = s.strip_prefix("http://") else {
            return Err(self.src.invalid_at(
                v,
                format!("rtms.proxy = {s:?}: use \"env\" (HTTPS_PROXY and friends, the default), \"none\", or an HTTP proxy as \"http://host:port\""),
            ));
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(self.src.invalid_at(
                v,
                "rtms.proxy must not hold credentials (pipeline.toml is not a secret): set rtms.proxy = \"env\" and export HTTPS_PROXY=http://user:password@host:port instead",
            ));
        }
        let (host, port) = host_port(authority);
        if host.is_empty() || port.is_none_or(|p| p.is_empty()) {
            return Err(self.src.invalid_at(
                v,
                format!(
                    "rtms.proxy = {s:?} needs a host and a port: \"http://proxy.example.com:3128\""
                ),
            ));
        }
        if let Some(problem) = url_port_problem(s) {
            return Err(self
                .src
                .invalid_at(v, format!("rtms.proxy = {s:?} {problem}")));
        }
        Ok(Proxy::Url(format!("http://{authority}")))
    }

    /// `[rtms] close_timeout_ms`: the wait for Zoom's answer to STREAM_CLOSE_REQ.
    fn close_timeout(&self, r: &RtmsConfig) -> Result<Duration, ConfigError> {
        let n = self.rtms_num(
            &r.close_timeout_ms,
            "close_timeout_ms",
            default_close_timeout_ms(),
            100,
            60_000,
        )?;
        Ok(ms(n.n))
    }

    /// `[rtms]` keys of one outage and of the end: reconnection jitter, the healthy time that
    /// ends an outage, and the drain after a stop.
    pub(super) fn outage(&self, r: &RtmsConfig) -> Result<(u32, Duration, Duration), ConfigError> {
        let jitter = self.rtms_num(
            &r.reconnect_jitter_percent,
            "reconnect_jitter_percent",
            default_reconnect_jitter_percent(),
            0,
            100,
        )?;
        let healthy = self.rtms_num(
            &r.reconnect_healthy_after_ms,
            "reconnect_healthy_after_ms",
            default_reconnect_healthy_after_ms(),
            100,
            MAX_MS,
        )?;
        let drain = self.rtms_num(
            &r.stop_drain_ms,
            "stop_drain_ms",
            default_stop_drain_ms(),
            0,
            60_000,
        )?;
        Ok((to_u32(jitter.n), ms(healthy.n), ms(drain.n)))
    }

    /// `[rtms]` keys of the flap limit: at most `reconnect_flap_max` reconnections within
    /// `reconnect_flap_window_ms`.
    pub(super) fn flap(&self, r: &RtmsConfig) -> Result<(u32, Duration), ConfigError> {
        let max = self.rtms_num(
            &r.reconnect_flap_max,
            "reconnect_flap_max",
            default_reconnect_flap_max(),
            1,
            100_000,
        )?;
        let window = self.rtms_num(
            &r.reconnect_flap_window_ms,
            "reconnect_flap_window_ms",
            default_reconnect_flap_window_ms(),
            1_000,
            MAX_MS,
        )?;
        Ok((to_u32(max.n), ms(window.n)))
    }

    pub(super) fn media_params(
        &mut self,
        r: &RtmsConfig,
        media: MediaKinds,
    ) -> Result<MediaParams, ConfigError> {
        self.unused_section(&r.audio, "audio", MediaKind::Audio, media);
        self.unused_section(&r.video, "video", MediaKind::Video, media);
        self.unused_section(&r.deskshare, "deskshare", MediaKind::Share, media);
        self.unused_section(&r.transcript, "transcript", MediaKind::Transcript, media);
        let mut params = MediaParams::default();
        if media.contains(MediaKind::Audio) {
            params.audio = Some(self.audio(&r.audio)?);
        }
        if media.contains(MediaKind::Video) {
            params.video = Some(self.video(&r.video, "video", VideoCodecName::H264)?);
        }
        if media.contains(MediaKind::Share) {
            params.deskshare = Some(self.video(&r.deskshare, "deskshare", VideoCodecName::Jpg)?);
        }
        if media.contains(MediaKind::Transcript) {
            let (language, enable_lid) = match &r.transcript {
                Some(sec) => self.transcript_language(sec)?,
                None => (-1, true),
            };
            params.transcript = Some(TranscriptParams {
                content_type: Some(content_type::TEXT),
                src_language: Some(language),
                enable_lid: Some(enable_lid),
            });
        }
        if media.contains(MediaKind::Chat) {
            params.chat = Some(ChatParams {
                content_type: Some(content_type::TEXT),
            });
        }
        Ok(params)
    }

    /// `[rtms.transcript]`: the source language (`src_language`, a name or a number of Zoom's
    /// TRANSCRIPT_LANGUAGE table; `language` is its older, numeric spelling) and language
    /// identification (`enable_lid`, older `detect_language`).
    fn transcript_language(
        &self,
        sec: &Spanned<TranscriptConfig>,
    ) -> Result<(i32, bool), ConfigError> {
        use rtms_proto::codes::transcript_language as lang;
        let t = sec.get_ref();
        let bad = |what: String| {
            format!(
                "rtms.transcript.src_language = {what} is not a transcript language Zoom knows: use one of {}",
                lang::listing()
            )
        };
        let language = match (&t.src_language, &t.language) {
            (Some(s), Some(_)) => {
                return Err(self.src.invalid_at(
                    s,
                    "rtms.transcript: set src_language only (language is its older name)",
                ));
            }
            (Some(s), None) => match s.get_ref() {
                LanguageSpec::Name(n) => {
                    lang::parse(n).ok_or_else(|| self.src.invalid_at(s, bad(format!("{n:?}"))))?
                }
                LanguageSpec::Number(n) => i32::try_from(*n)
                    .ok()
                    .filter(|n| lang::name(*n).is_some())
                    .ok_or_else(|| self.src.invalid_at(s, bad(n.to_string())))?,
            },
            (None, Some(l)) => i32::try_from(*l.get_ref())
                .ok()
                .filter(|n| lang::name(*n).is_some())
                .ok_or_else(|| self.src.invalid_at(l, bad(l.get_ref().to_string())))?,
            (None, None) => -1,
        };
        let enable_lid = match (t.enable_lid, t.detect_language) {
            (Some(_), Some(_)) => {
                return Err(self.src.invalid_at(
                    sec,
                    "rtms.transcript: set enable_lid only (detect_language is its older name)",
                ));
            }
            (a, b) => a.or(b).unwrap_or(true),
        };
        if !enable_lid && language == -1 {
            return Err(self.src.invalid_at(
                sec,
                "rtms.transcript.enable_lid = false locks transcription to src_language, which is not set: name the language (src_language = \"english\") or leave enable_lid on",
            ));
        }
        Ok((language, enable_lid))
    }

    /// `[rtms.audio]`: a sample rate Zoom supports, stereo only as Opus.
    fn audio(&self, raw: &Option<Spanned<AudioConfig>>) -> Result<AudioParams, ConfigError> {
        let empty = AudioConfig::default();
        let a = raw.as_ref().map_or(&empty, |a| a.get_ref());
        let codec_name = a
            .codec
            .as_ref()
            .map_or(AudioCodecName::L16, |c| *c.get_ref());
        let rate = self.num(
            &a.sample_rate,
            "rtms.audio.sample_rate",
            16_000,
            0,
            u64::MAX,
        )?;
        let rate_code = match rate.n {
            8_000 => sample_rate::SR_8K,
            16_000 => sample_rate::SR_16K,
            32_000 => sample_rate::SR_32K,
            48_000 => sample_rate::SR_48K,
            _ => {
                return Err(self.fail(
                    "rtms.audio.sample_rate",
                    &rate,
                    "is not supported: use 8000, 16000, 32000 or 48000",
                ));
            }
        };
        let channels = self.num(&a.channels, "rtms.audio.channels", 1, 1, 2)?;
        if channels.n == 2 && codec_name != AudioCodecName::Opus {
            return Err(self.fail("rtms.audio.channels", &channels, "needs codec = \"opus\": Zoom sends stereo only as Opus; use channels = 1 or codec = \"opus\""));
        }
        let frame_ms = self.num(&a.frame_ms, "rtms.audio.frame_ms", 20, 10, 1000)?;
        Ok(AudioParams {
            content_type: Some(content_type::RAW_AUDIO),
            sample_rate: Some(rate_code),
            channel: Some(to_u32(channels.n)),
            codec: Some(match codec_name {
                AudioCodecName::L16 => codec::L16,
                AudioCodecName::G711 => codec::G711,
                AudioCodecName::G722 => codec::G722,
                AudioCodecName::Opus => codec::OPUS,
            }),
            data_opt: Some(if a.per_speaker.unwrap_or(false) {
                data_opt::AUDIO_MULTI_STREAMS
            } else {
                data_opt::AUDIO_MIXED_STREAM
            }),
            send_rate: Some(to_u32(frame_ms.n)),
        })
    }

    pub(super) fn video(
        &self,
        raw: &Option<Spanned<VideoConfig>>,
        name: &str,
        default_codec: VideoCodecName,
    ) -> Result<VideoParams, ConfigError> {
        let empty = VideoConfig::default();
        let v = raw.as_ref().map_or(&empty, |v| v.get_ref());
        let c = v.codec.as_ref().map_or(default_codec, |c| *c.get_ref());
        let (max_fps, default_fps) = match (c, name) {
            (VideoCodecName::H264, _) => (30, 25),
            (_, "deskshare") => (5, 1),
            _ => (5, 5),
        };
        let key = format!("rtms.{name}.fps");
        let fps = match &v.fps {
            Some(f) => Value {
                n: *f.get_ref(),
                origin: Origin::File(f.span()),
            },
            None => Value {
                n: default_fps,
                origin: Origin::Default,
            },
        };
        if fps.n < 1 || fps.n > max_fps {
            let codec_name = match c {
                VideoCodecName::H264 => "h264",
                VideoCodecName::Jpg => "jpg",
                VideoCodecName::Png => "png",
            };
            return Err(self.fail(
                &key,
                &fps,
                &format!("is out of range for codec {codec_name:?}: JPG and PNG allow 1 to 5 frames per second, H.264 allows 1 to 30"),
            ));
        }
        Ok(VideoParams {
            content_type: Some(content_type::RAW_VIDEO),
            codec: Some(match c {
                VideoCodecName::H264 => codec::H264,
                VideoCodecName::Jpg => codec::JPG,
                VideoCodecName::Png => codec::PNG,
            }),
            resolution: Some(match v.resolution.unwrap_or(ResolutionName::Hd) {
                ResolutionName::Sd => 1,
                ResolutionName::Hd => 2,
                ResolutionName::Fhd => 3,
                ResolutionName::Qhd => 4,
            }),
            data_opt: (name == "video").then_some(data_opt::VIDEO_SINGLE_ACTIVE_STREAM),
            fps: Some(to_u32(fps.n)),
        })
    }
}

/// Why an `rtms.allowed_hosts` entry (trimmed, lowercase) is not a host pattern, as the
/// end of a sentence about it; `None` when it is one. An entry matches its host on every
/// port, so a URL or a port is refused with the host to write instead.
fn allowed_host_problem(v: &str) -> Option<String> {
    const PATTERN: &str =
        "write a host name or IP (\"127.0.0.1\"), or *.<domain> for its subdomains (\"*.zoom.us\")";
    let (url, authority) = match v.split_once("://") {
        Some((_, rest)) => (true, rest.split(['/', '?', '#']).next().unwrap_or("")),
        None => (false, v),
    };
    let (host, port) = host_port(authority.rsplit_once('@').map_or(authority, |(_, h)| h));
    if url || port.is_some() {
        let what = if url { "is a URL" } else { "has a port" };
        let port_problem = url_port_problem(v)
            .map(|p| format!(" and {p}"))
            .unwrap_or_default();
        return Some(format!(
            "{what}, not a host pattern{port_problem}: list the host alone, {host:?}, which is allowed on every port"
        ));
    }
    let ok = match v.strip_prefix("*.") {
        Some(d) => d.contains('.') && !d.contains(['*', '/', ':', '@', ' ']),
        None => match v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Some(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
            None => !v.is_empty() && !v.contains(['*', '/', ':', '@', ' ', '[', ']']),
        },
    };
    (!ok).then(|| format!("is not a host pattern: {PATTERN}"))
}
