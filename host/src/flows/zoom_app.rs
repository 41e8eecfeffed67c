//! The in-client Zoom App (`examples/zoom-app/`), served on the webhook listener under
//! `/zoom-app/` when `server.zoom_app = true`.
//!
//! The page uses the Zoom Apps SDK to start and stop the meeting's stream from inside the
//! Zoom client. Its "start from the server" button calls `POST /zoom-app/api/rtms/start`,
//! which needs the `x-zoom-app-context` header the SDK's `getAppContext()` gives: Zoom's
//! AES-256-GCM envelope (key: SHA-256 of the app's client secret) around a JSON object with the
//! meeting (`mid`) the user is in. So the route can start only the meeting its caller is in,
//! and only for callers Zoom vouches for; the answer waits for the stream as `rtms-host start`
//! does. A verified context must then pass [`super::app_guard`]: fresh, not replayed, within
//! its meeting's rate, and from the host or a co-host for stop, pause and resume. Pages carry the security headers Zoom requires of an app's home URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use rtms_client::{AppRequest, AppRoutes};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use super::app_guard::AppContext;
use super::start::RtmsControl;
use crate::flows::zoom_rest::Action;

/// Where the app is served.
pub const PREFIX: &str = "/zoom-app/";

const INDEX: &str = include_str!("../../../examples/zoom-app/index.html");
const SCRIPT: &str = include_str!("../../../examples/zoom-app/app.js");
const STYLE: &str = include_str!("../../../examples/zoom-app/app.css");

/// The longest context header read (Zoom's are a few hundred bytes).
const MAX_CONTEXT: usize = 4096;

fn key(client_secret: &str) -> Aes256Gcm {
    let digest = Sha256::digest(client_secret.as_bytes());
    Aes256Gcm::new_from_slice(&digest).expect("SHA-256 is 32 bytes")
}

/// Decrypts an `x-zoom-app-context` value:
/// `[ivLength: 1][iv][aadLength: 2 LE][aad][cipherLength: 4 LE][cipherText][tag: 16]`, base64.
pub fn decrypt_context(header: &str, client_secret: &str) -> Result<AppContext, String> {
    if header.len() > MAX_CONTEXT {
        return Err("the app context is too long".into());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim()))
        .map_err(|_| "the app context is not base64".to_owned())?;
    let mut rest = raw.as_slice();
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("the app context is cut short".into());
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let iv_len = take(1)?[0] as usize;
    let iv = take(iv_len)?.to_vec();
    let aad_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
    let aad = take(aad_len)?.to_vec();
    let cipher_len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    let cipher = take(cipher_len)?.to_vec();
    let tag = take(16)?.to_vec();
    if iv.len() != 12 {
        return Err(format!(
            "the app context has a {}-byte IV; 12 expected",
            iv.len()
        ));
    }
    let mut sealed = cipher;
    sealed.extend_from_slice(&tag);
    let plain = key(client_secret)
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: &aad,
            },
        )
        .map_err(|_| {
            "the app context does not verify: not from Zoom, or the app's client secret differs"
                .to_owned()
        })?;
    serde_json::from_slice(&plain)
        .map_err(|e| format!("the app context is not the expected JSON: {e}"))
}

/// Seals a context as Zoom does (for tests and tools that stand in for the Zoom client).
pub fn encrypt_context(ctx: &AppContext, client_secret: &str) -> String {
    seal(
        &serde_json::to_vec(ctx).expect("serializable"),
        client_secret,
    )
}

/// Seals any plaintext in Zoom's envelope (for the fuzz target: documents that are not
/// contexts).
pub fn seal(plain: &[u8], client_secret: &str) -> String {
    let iv: [u8; 12] = rand::random();
    let aad: &[u8] = b"";
    let sealed = key(client_secret)
        .encrypt(Nonce::from_slice(&iv), Payload { msg: plain, aad })
        .expect("AES-GCM encryption");
    let (cipher, tag) = sealed.split_at(sealed.len() - 16);
    let mut out = vec![iv.len() as u8];
    out.extend_from_slice(&iv);
    out.extend_from_slice(&(aad.len() as u16).to_le_bytes());
    out.extend_from_slice(aad);
    out.extend_from_slice(&(cipher.len() as u32).to_le_bytes());
    out.extend_from_slice(cipher);
    out.extend_from_slice(tag);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The app's routes.
pub struct ZoomApp {
    pub client_secret: String,
    pub rtms: Arc<RtmsControl>,
    /// Server-side requests refused (no context, one Zoom did not seal, expired, not in a
    /// meeting): counted for the metrics (`rtms_zoom_app_refusals_total`).
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    /// Freshness, replays, the per-meeting rate and roles (see [`super::app_guard`]).
    pub guard: super::app_guard::Guard,
}

fn page(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The headers Zoom requires of an app's home URL.
    h.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' https://appssdk.zoom.us; connect-src 'self'; style-src 'self'; img-src 'self' data:",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

fn answer(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl ZoomApp {
    /// Refuses a server-side request: counted, and logged at most a few times per interval
    /// (anyone can send these to the public listener).
    fn refuse(&self, status: StatusCode, error: &str) -> Response<Full<Bytes>> {
        let n = self
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if rtms_client::ratelog::admit("zoom-app-refused") {
            tracing::warn!(error, refused_so_far = n, "Zoom App request refused");
        }
        answer(status, json!({"error": error}))
    }

    async fn route(&self, req: AppRequest) -> Response<Full<Bytes>> {
        let sub = req.path.strip_prefix(PREFIX).unwrap_or("");
        match (&req.method, sub) {
            (&Method::GET | &Method::HEAD, "" | "index.html") => {
                page("text/html; charset=utf-8", INDEX)
            }
            (&Method::GET | &Method::HEAD, "app.js") => {
                page("text/javascript; charset=utf-8", SCRIPT)
            }
            (&Method::GET | &Method::HEAD, "app.css") => page("text/css; charset=utf-8", STYLE),
            (&Method::POST, a) if a.starts_with("api/rtms/") => {
                let Some(action) = Action::parse(&a["api/rtms/".len()..]) else {
                    return answer(
                        StatusCode::NOT_FOUND,
                        json!({"error": "use api/rtms/start, stop, pause or resume"}),
                    );
                };
                let Some(header) = req
                    .headers
                    .get("x-zoom-app-context")
                    .and_then(|v| v.to_str().ok())
                else {
                    return self.refuse(
                        StatusCode::UNAUTHORIZED,
                        "send the x-zoom-app-context header from zoomSdk.getAppContext()",
                    );
                };
                let ctx = match decrypt_context(header, &self.client_secret) {
                    Ok(c) => c,
                    Err(e) => return self.refuse(StatusCode::UNAUTHORIZED, &e),
                };
                let Some(meeting) = ctx.mid.clone().filter(|m| !m.is_empty()) else {
                    return self.refuse(
                        StatusCode::BAD_REQUEST,
                        "the app was not opened in a meeting",
                    );
                };
                let now = rtms_proto::unix_ms();
                if let Err((status, why)) = self.guard.check(header, &ctx, &meeting, action, now) {
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                    return self.refuse(status, &why);
                }
                tracing::info!(action = action.as_str(), user = %ctx.uid, "Zoom App asked for an RTMS status change");
                match self.rtms.act(&meeting, action).await {
                    Ok(v) => answer(StatusCode::OK, v),
                    Err((status, e)) => answer(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                        json!({"error": e}),
                    ),
                }
            }
            _ => answer(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }
}

impl AppRoutes for ZoomApp {
    fn prefix(&self) -> &str {
        PREFIX
    }

    fn handle(
        &self,
        req: AppRequest,
    ) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send + '_>> {
        Box::pin(self.route(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> AppContext {
        AppContext {
            typ: "meeting".into(),
            uid: "u1".into(),
            mid: Some("abc==".into()),
            ts: Some(1),
            exp: None,
            attendrole: Some("host".into()),
        }
    }

    #[test]
    fn a_sealed_context_opens_with_the_same_secret_only() {
        let sealed = encrypt_context(&ctx(), "app-secret");
        assert_eq!(decrypt_context(&sealed, "app-secret").unwrap(), ctx());
        let e = decrypt_context(&sealed, "other-secret").unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn tampered_or_truncated_contexts_are_refused() {
        let sealed = encrypt_context(&ctx(), "s");
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        let last = raw.len() - 20;
        raw[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(
            decrypt_context(&tampered, "s")
                .unwrap_err()
                .contains("does not verify")
        );
        let cut = base64::engine::general_purpose::STANDARD.encode(&raw[..10]);
        assert!(
            decrypt_context(&cut, "s")
                .unwrap_err()
                .contains("cut short")
        );
        assert!(decrypt_context("%%%", "s").unwrap_err().contains("base64"));
        assert!(
            decrypt_context(&"A".repeat(5000), "s")
                .unwrap_err()
                .contains("too long")
        );
    }
}
