//! Plugins' outgoing HTTP (`wasi:http/outgoing-handler`), behind the plugin's allow-list and
//! budget.
//!
//! wasmtime-wasi-http turns the guest's request into an `http::Request` and hands it to
//! [`NetHooks::send_request`]; everything after that is here:
//!
//! 1. the plugin must have a `[plugin.net]` table, and a pattern of its `http` list must allow
//!    the URL (scheme, host, port, path prefix; an IP literal only if a pattern names it);
//! 2. the plugin's concurrency limit and requests-per-minute budget (over all its sessions:
//!    one [`NetGate`] per plugin) must have room;
//! 3. the host resolves the name itself and keeps only public addresses, unless the
//!    operator set `allow_private` (a pattern naming an address reaches that address);
//! 4. it connects to a checked address (or through the configured proxy), speaks TLS with the
//!    same rustls settings as the Zoom connections (system roots plus the extra CA), and
//!    sends the request over HTTP/1.1, under the connect, first-byte and between-bytes
//!    timeouts (the guest may ask for shorter ones, never longer);
//! 5. the response body is cut at `max_response_bytes`.
//!
//! Redirects are not followed: the guest sees the 3xx and any request it makes to the new
//! location goes through all of the above again. Every refusal is an `error-code` the guest
//! receives (never a trap), counted per plugin and reason through
//! [`Embedder::net`](super::store::Embedder::net), and logged (rate-limited) with the rule it
//! failed.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Scheme, Uri};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rtms_config::{HttpRule, Net};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::descriptors::{Descriptors, Slot};

/// Why a plugin's request was refused or cut, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The plugin has no `[plugin.net]` table (or an empty `http` list).
    NoGrant,
    /// No pattern allows the URL.
    NotListed,
    /// The URL names an IP address no pattern names.
    IpLiteral,
    /// The name resolves only to loopback or private addresses.
    PrivateAddress,
    /// `max_concurrent` requests already in flight.
    Concurrency,
    /// `requests_per_minute` spent.
    Rate,
    /// A connect, first-byte or between-bytes timeout.
    Timeout,
    /// The response body passed `max_response_bytes`.
    TooLarge,
    /// A WebSocket's receive buffer was full: a received message dropped, or the
    /// connection closed (the plugin chose at open).
    BufferFull,
    /// The plugins of the process hold their whole descriptor budget
    /// (`[runtime] plugin_open_files`).
    Descriptors,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NoGrant,
        Reason::NotListed,
        Reason::IpLiteral,
        Reason::PrivateAddress,
        Reason::Concurrency,
        Reason::Rate,
        Reason::Timeout,
        Reason::TooLarge,
        Reason::BufferFull,
        Reason::Descriptors,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoGrant => "no_grant",
            Reason::NotListed => "not_listed",
            Reason::IpLiteral => "ip_literal",
            Reason::PrivateAddress => "private_address",
            Reason::Concurrency => "concurrency",
            Reason::Rate => "rate",
            Reason::Timeout => "timeout",
            Reason::TooLarge => "too_large",
            Reason::BufferFull => "buffer_full",
            Reason::Descriptors => "descriptors",
        }
    }

    /// The kind the rate-limited log counts it under.
    fn log_kind(self) -> &'static str {
        match self {
            Reason::NoGrant => "plugin http refused: no [plugin.net]",
            Reason::NotListed => "plugin http refused: not listed",
            Reason::IpLiteral => "plugin http refused: ip literal",
            Reason::PrivateAddress => "plugin http refused: private address",
            Reason::Concurrency => "plugin http refused: max_concurrent",
            Reason::Rate => "plugin http refused: requests_per_minute",
            Reason::Timeout => "plugin http: timeout",
            Reason::TooLarge => "plugin http: response too large",
            Reason::BufferFull => "plugin websocket: receive buffer full",
            Reason::Descriptors => "plugin connection refused: plugin_open_files",
        }
    }

    /// The error the guest receives.
    fn error(self, limit: u64) -> Error {
        match self {
            Reason::NoGrant | Reason::NotListed | Reason::IpLiteral => Error::HttpRequestDenied,
            Reason::PrivateAddress => Error::DestinationIpProhibited,
            Reason::Concurrency | Reason::Rate | Reason::Descriptors => {
                Error::ConnectionLimitReached
            }
            Reason::Timeout => Error::ConnectionTimeout,
            Reason::TooLarge | Reason::BufferFull => Error::HttpResponseBodySize(Some(limit)),
        }
    }
}

/// What the embedder counts of a plugin's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// A request passed the allow-list and the budget.
    Started,
    /// A request refused or cut.
    Stopped(Reason),
    /// Request body bytes sent.
    BytesOut(u64),
    /// Response body bytes received.
    BytesIn(u64),
}

/// How plugins' connections leave the process: the same TLS trust and proxy as the Zoom
/// connections.
pub use rtms_client::ClientSettings;

/// One plugin's network grant, shared by all its instances: the allow-list, the limits,
/// the in-flight count and the per-minute budget.
pub struct NetGate {
    pub plugin: Arc<str>,
    pub policy: Net,
    pub settings: ClientSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<Matcher>,
    inflight: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for NetGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetGate")
            .field("plugin", &self.plugin)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PartialEq for NetGate {
    fn eq(&self, other: &Self) -> bool {
        self.plugin == other.plugin
            && self.policy == other.policy
            && self.settings == other.settings
    }
}

impl Eq for NetGate {}

impl NetGate {
    /// The gate of a plugin's `[plugin.net]`; loads the TLS trust when any URL is allowed.
    pub fn new(plugin: Arc<str>, policy: Net, settings: ClientSettings) -> anyhow::Result<Self> {
        let tls = if policy.enabled() {
            Some(settings.tls().map_err(|e| {
                anyhow::anyhow!(
                    "plugin {plugin}: cannot set up TLS for its HTTP requests: {e} (check zoom.ca_file)"
                )
            })?)
        } else {
            None
        };
        let proxy = settings.proxy.matcher();
        let inflight = Arc::new(Semaphore::new(policy.max_concurrent as usize));
        let bucket = Mutex::new(Bucket::full(policy.requests_per_minute));
        Ok(Self {
            plugin,
            policy,
            settings,
            tls,
            proxy,
            inflight,
            bucket,
        })
    }

    /// The rule allowing `t`, or why none does.
    pub(super) fn check(&self, t: &Target) -> Result<&HttpRule, (Reason, String)> {
        if let Some(rule) = self
            .policy
            .allows(&t.scheme, &t.host, Some(t.port), &t.path)
        {
            return Ok(rule);
        }
        let listed: Vec<&str> = self.policy.http.iter().map(|r| r.text.as_str()).collect();
        let listed = listed.join(", ");
        if t.ip.is_some() {
            return Err((
                Reason::IpLiteral,
                format!(
                    "the URL names an IP address, and no pattern of [plugin.net] http ({listed}) names that address: call the host by a listed name, or list the address ({}://{}:{})",
                    t.scheme, t.host, t.port
                ),
            ));
        }
        Err((
            Reason::NotListed,
            format!(
                "no pattern of [plugin.net] http ({listed}) allows {}://{}:{}{}: add one (scheme://host[:port][/path-prefix]) if the plugin should reach it",
                t.scheme,
                t.host,
                t.port,
                t.path_only()
            ),
        ))
    }

    /// A slot of `max_concurrent` and a token of `requests_per_minute`.
    pub(super) fn admit(&self) -> Result<OwnedSemaphorePermit, (Reason, String)> {
        let permit = self.inflight.clone().try_acquire_owned().map_err(|_| {
            (
                Reason::Concurrency,
                format!("{} requests are already in flight ([plugin.net] max_concurrent = {}): wait for one to finish, or raise max_concurrent", self.policy.max_concurrent, self.policy.max_concurrent),
            )
        })?;
        if !self.bucket.lock().take(self.policy.requests_per_minute) {
            return Err((
                Reason::Rate,
                format!(
                    "the plugin spent its budget of [plugin.net] requests_per_minute = {}: make fewer calls, or raise requests_per_minute",
                    self.policy.requests_per_minute
                ),
            ));
        }
        Ok(permit)
    }
}

/// A token bucket of `rpm` tokens, refilled at `rpm` per minute.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    fn full(rpm: u32) -> Self {
        Self {
            tokens: f64::from(rpm),
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self, rpm: u32) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(rpm) / 60.0;
        self.tokens = (self.tokens + refill).min(f64::from(rpm));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Who makes a request: labels for the log, and where its events are counted (the
/// embedder's [`Embedder::net`](super::store::Embedder::net)).
pub struct Caller {
    pub plugin: Arc<str>,
    pub stream_id: Arc<str>,
    pub events: Box<dyn Fn(NetEvent) + Send + Sync>,
    /// The process-wide budget a connection's socket takes a slot of.
    pub fds: Descriptors,
}

impl Caller {
    pub(super) fn record(&self, event: NetEvent) {
        (self.events)(event);
    }

    /// A slot of the process's descriptor budget for one connection, or the refusal.
    pub(super) fn slot(&self) -> Result<Slot, (Reason, String)> {
        self.fds.take().ok_or_else(|| {
            (
                Reason::Descriptors,
                self.fds.refusal("the connection is refused"),
            )
        })
    }
}

/// The network hooks of one instance's Store.
pub struct NetHooks {
    /// `None`: the plugin has no network at all.
    pub gate: Option<Arc<NetGate>>,
    pub ctx: Arc<Caller>,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(Response<WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let gate = self.gate.clone();
        let ctx = self.ctx.clone();
        Box::new(send(gate, ctx, request, options))
    }

    // The crate's defaults log every failure unbounded; these map without logging (the
    // guest gets the code, and refusals are logged rate-limited where they happen).
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        if err.is_timeout() {
            return ErrorCode::ConnectionReadTimeout;
        }
        ErrorCode::HttpProtocolError
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        match err.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
            std::io::ErrorKind::TimedOut => ErrorCode::ConnectionTimeout,
            _ => ErrorCode::DestinationUnavailable,
        }
    }

    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        let bad_cert = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
        if bad_cert {
            ErrorCode::TlsCertificateError
        } else {
            ErrorCode::TlsProtocolError
        }
    }
}

/// Where a request goes.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) scheme: String,
    /// As the URL writes it, lower case, without brackets.
    pub(super) host: String,
    pub(super) ip: Option<IpAddr>,
    pub(super) port: u16,
    /// Path and query.
    pub(super) path: String,
}

impl Target {
    pub(super) fn of(uri: &Uri) -> Result<Self, Error> {
        let scheme = uri.scheme().ok_or(Error::HttpRequestUriInvalid)?;
        let https = *scheme == Scheme::HTTPS || scheme.as_str().eq_ignore_ascii_case("wss");
        let host = uri
            .host()
            .ok_or(Error::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        Ok(Self {
            scheme: scheme.as_str().to_ascii_lowercase(),
            ip: host.parse().ok(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            host,
        })
    }

    /// Whether the connection speaks TLS (`https`, `wss`).
    fn https(&self) -> bool {
        self.scheme == "https" || self.scheme == "wss"
    }

    fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }
}

/// Counts, logs (rate-limited) and returns the error of a refusal.
pub(super) fn stop(
    ctx: &Caller,
    gate: Option<&NetGate>,
    reason: Reason,
    url: &str,
    why: &str,
) -> Error {
    ctx.record(NetEvent::Stopped(reason));
    if rtms_client::ratelog::admit(reason.log_kind()) {
        tracing::warn!(plugin = %ctx.plugin, stream = %ctx.stream_id, url, reason = reason.as_str(), "plugin HTTP request stopped: {why}");
    }
    reason.error(gate.map_or(0, |g| g.policy.max_response_bytes))
}

/// The URL without its query, for logs.
fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

async fn send(
    gate: Option<Arc<NetGate>>,
    ctx: Arc<Caller>,
    req: Request<WasiBody>,
    opts: Option<RequestOptions>,
) -> Sent {
    let url = shown(req.uri());
    let Some(gate) = gate else {
        let why = "the plugin has no [plugin.net] table: add one whose http list names the URLs it may call";
        return Err(stop(&ctx, None, Reason::NoGrant, &url, why));
    };
    let g = &*gate;
    let target = Target::of(req.uri())?;
    let rule = g
        .check(&target)
        .map_err(|(r, why)| stop(&ctx, Some(g), r, &url, &why))?
        .clone();
    let permit = g
        .admit()
        .map_err(|(r, why)| stop(&ctx, Some(g), r, &url, &why))?;
    let slot = ctx
        .slot()
        .map_err(|(r, why)| stop(&ctx, Some(g), r, &url, &why))?;
    ctx.record(NetEvent::Started);
    let limits = Timeouts::of(&g.policy, opts);
    let addrs = resolve(g, &target, &rule, limits.connect)
        .await
        .map_err(|e| e.into_error(&ctx, g, &url))?;
    let io = connect(g, &target, &addrs, limits.connect)
        .await
        .map_err(|e| e.into_error(&ctx, g, &url))?;
    exchange(
        io,
        req,
        limits,
        Guard {
            _permit: permit,
            _slot: slot,
            ctx,
            gate,
            url,
        },
    )
    .await
}

/// A failure before the response, counted when it is a refusal or a timeout.
pub(super) enum Failed {
    Stopped(Reason, String),
    Other(Error),
}

impl Failed {
    fn into_error(self, ctx: &Caller, g: &NetGate, url: &str) -> Error {
        match self {
            Failed::Stopped(r, why) => stop(ctx, Some(g), r, url, &why),
            Failed::Other(e) => e,
        }
    }
}

/// The timeouts of one request: the plugin's limits, or shorter ones the guest asked for.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    fn of(p: &Net, opts: Option<RequestOptions>) -> Self {
        let pick = |asked: Option<Duration>, max: Duration| {
            asked
                .map_or(max, |a| a.min(max))
                .max(Duration::from_millis(1))
        };
        let o = opts.unwrap_or_default();
        Self {
            connect: pick(o.connect_timeout, p.connect_timeout),
            first_byte: pick(o.first_byte_timeout, p.first_byte_timeout),
            between_bytes: pick(o.between_bytes_timeout, p.between_bytes_timeout),
        }
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// unique-local, shared (CGNAT), documentation, benchmarking, multicast or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// The addresses to connect to: the literal a pattern names, or the name's public addresses
/// (all of them with `allow_private`).
pub(super) async fn resolve(
    g: &NetGate,
    t: &Target,
    rule: &HttpRule,
    within: Duration,
) -> Result<Vec<SocketAddr>, Failed> {
    if let Some(ip) = t.ip {
        return Ok(vec![SocketAddr::new(ip, t.port)]);
    }
    let found = tokio::time::timeout(within, tokio::net::lookup_host((t.host.as_str(), t.port)))
        .await
        .map_err(|_| {
            Failed::Stopped(
                Reason::Timeout,
                format!(
                    "resolving {} took longer than [plugin.net] connect_timeout_ms = {}",
                    t.host,
                    within.as_millis()
                ),
            )
        })?
        .map_err(|e| {
            Failed::Other(Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })
        })?;
    let all: Vec<SocketAddr> = found.collect();
    if g.policy.allow_private {
        return Ok(all);
    }
    let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
    if public.is_empty() {
        let ips: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
        return Err(Failed::Stopped(
            Reason::PrivateAddress,
            format!(
                "{} resolves to {} (loopback or private), and the pattern {rule} names a host, not that address: list the address itself in [plugin.net] http, or set allow_private = true",
                t.host,
                ips.join(", ")
            ),
        ));
    }
    Ok(public)
}

/// A connection to the destination.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens the connection: through the proxy when it takes this destination, else to the
/// first checked address that answers; then TLS for https.
pub(super) async fn connect(
    g: &NetGate,
    t: &Target,
    addrs: &[SocketAddr],
    within: Duration,
) -> Result<Box<dyn Io>, Failed> {
    let timed_out = || {
        Failed::Stopped(
            Reason::Timeout,
            format!(
                "connecting to {}:{} took longer than [plugin.net] connect_timeout_ms = {}",
                t.host,
                t.port,
                within.as_millis()
            ),
        )
    };
    let tunnel = match &g.proxy {
        Some(m) => tokio::time::timeout(
            within,
            rtms_client::proxy_tunnel(m, t.https(), &t.host, t.port),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| Failed::Other(Error::Connect(e)))?,
        None => None,
    };
    let tcp = match tunnel {
        Some(s) => s,
        None => tokio::time::timeout(within, connect_any(addrs))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| Failed::Other(Error::Connect(e)))?,
    };
    let _ = tcp.set_nodelay(true);
    if !t.https() {
        return Ok(Box::new(tcp));
    }
    let tls = g
        .tls
        .clone()
        .ok_or_else(|| Failed::Other(Error::ConfigurationError))?;
    let name = match t.ip {
        Some(ip) => rustls::pki_types::ServerName::from(ip),
        None => rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|_| Failed::Other(Error::HttpRequestUriInvalid))?,
    };
    let stream = tokio::time::timeout(
        within,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(|e| Failed::Other(Error::Tls(e)))?;
    Ok(Box::new(stream))
}

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("the name has no address");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What a request holds until its response body is done: its slot of `max_concurrent` and
/// its socket's slot of the process's descriptor budget.
struct Guard {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
    ctx: Arc<Caller>,
    gate: Arc<NetGate>,
    url: String,
}

/// Sends the request over HTTP/1.1 and returns the response with its body capped and
/// timed.
async fn exchange(io: Box<dyn Io>, mut req: Request<WasiBody>, t: Timeouts, guard: Guard) -> Sent {
    let (ctx, g) = (guard.ctx.clone(), guard.gate.clone());
    let (mut sender, conn) = tokio::time::timeout(
        t.connect,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let conn = AbortOnDrop(tokio::spawn(conn));
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *req.uri_mut() = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let counter = ctx.clone();
    let req = req.map(|b| {
        b.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                counter.record(NetEvent::BytesOut(d.len() as u64));
            }
            f
        })
        .boxed_unsync()
    });
    let res = match tokio::time::timeout(t.first_byte, sender.send_request(req)).await {
        Ok(r) => r?,
        Err(_) => {
            let why = format!(
                "no response within [plugin.net] first_byte_timeout_ms = {}",
                t.first_byte.as_millis()
            );
            return Err(stop(&ctx, Some(&g), Reason::Timeout, &guard.url, &why));
        }
    };
    let cap = g.policy.max_response_bytes;
    if let Some(len) = http_body::Body::size_hint(res.body()).exact()
        && len > cap
    {
        let why = format!(
            "the response declares {len} bytes, past [plugin.net] max_response_bytes = {cap}"
        );
        return Err(stop(&ctx, Some(&g), Reason::TooLarge, &guard.url, &why));
    }
    let res = res.map(|incoming| {
        Capped {
            inner: incoming,
            seen: 0,
            cap,
            between: t.between_bytes,
            idle: Box::pin(tokio::time::sleep(t.between_bytes)),
            done: false,
            _conn: conn,
            guard,
        }
        .boxed_unsync()
    });
    Ok((res, Box::new(async { Ok(()) })))
}

/// Aborts the connection task when the response is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body cut at `cap` bytes and at `between` of silence, counting bytes in.
struct Capped {
    inner: hyper::body::Incoming,
    seen: u64,
    cap: u64,
    between: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    _conn: AbortOnDrop,
    guard: Guard,
}

impl Capped {
    fn fail(&mut self, reason: Reason, why: String) -> Error {
        self.done = true;
        let g = &self.guard;
        stop(&g.ctx, Some(&g.gate), reason, &g.url, &why)
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    this.guard.ctx.record(NetEvent::BytesIn(d.len() as u64));
                    if this.seen > this.cap {
                        let why = format!(
                            "the response body passed [plugin.net] max_response_bytes = {}",
                            this.cap
                        );
                        return Poll::Ready(Some(Err(this.fail(Reason::TooLarge, why))));
                    }
                }
                let next = tokio::time::Instant::now() + this.between;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(Error::from(e))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let why = format!(
                        "the response body was silent past [plugin.net] between_bytes_timeout_ms = {}",
                        this.between.as_millis()
                    );
                    Poll::Ready(Some(Err(this.fail(Reason::Timeout, why))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_private_and_reserved_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_minute_budget_refills_at_its_rate() {
        let mut b = Bucket::full(2);
        assert!(b.take(2) && b.take(2));
        assert!(!b.take(2));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.take(2));
        assert!(!b.take(2));
    }
}
