//! Signatures: the RTMS handshake signature and Zoom's webhook signature.
//!
//! - Handshake (msg 1 and msg 3): lowercase hex HMAC-SHA256 keyed with the OAuth client
//!   secret over `client_id + "," + id + "," + rtms_stream_id`, the id raw as received.
//! - Webhook: `x-zm-signature: v0=<hex>` = HMAC-SHA256 keyed with the webhook secret token
//!   over `"v0:" + x-zm-request-timestamp + ":" + raw body`.
//! - `endpoint.url_validation`: `encryptedToken` = hex HMAC-SHA256(secret token, plainToken).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The handshake signature for msg 1 and msg 3.
pub fn handshake_signature(
    client_id: &str,
    client_secret: &str,
    id: &str,
    stream_id: &str,
) -> String {
    hmac_hex(
        client_secret.as_bytes(),
        &[
            client_id.as_bytes(),
            b",",
            id.as_bytes(),
            b",",
            stream_id.as_bytes(),
        ],
    )
}

/// Constant-time comparison of two signatures (hex text, compared as bytes).
pub fn signatures_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `x-zm-signature` header value (`v0=...`) for a webhook body sent at `timestamp`
/// (Unix seconds, exactly as in `x-zm-request-timestamp`).
pub fn webhook_signature(secret_token: &str, timestamp: &str, body: &[u8]) -> String {
    let hex = hmac_hex(
        secret_token.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    format!("v0={hex}")
}

/// The `encryptedToken` answering an `endpoint.url_validation` challenge.
pub fn url_validation_token(secret_token: &str, plain_token: &str) -> String {
    hmac_hex(secret_token.as_bytes(), &[plain_token.as_bytes()])
}

/// Why a webhook failed verification. The messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookAuthError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("x-zm-request-timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error(
        "x-zm-request-timestamp is {skew_secs} s away from now, outside the {window_secs} s window (replayed, or the clock is wrong)"
    )]
    Stale { skew_secs: i64, window_secs: u64 },
    #[error("x-zm-signature does not match the body (wrong secret token, or the body was altered)")]
    Mismatch,
}

/// Verifies a webhook: the timestamp within `window_secs` of `now_secs`, and the signature
/// over the raw body, compared in constant time.
pub fn verify_webhook(
    secret_token: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
    window_secs: u64,
) -> Result<(), WebhookAuthError> {
    let ts = timestamp.ok_or(WebhookAuthError::MissingHeader("x-zm-request-timestamp"))?;
    let sig = signature.ok_or(WebhookAuthError::MissingHeader("x-zm-signature"))?;
    let ts_num: i64 = ts
        .trim()
        .parse()
        .map_err(|_| WebhookAuthError::BadTimestamp(crate::text::prefix(ts, 32).to_owned()))?;
    // Saturating: a timestamp near i64::MIN or MAX is stale, not an overflow.
    let skew = now_secs.saturating_sub(ts_num);
    if skew.unsigned_abs() > window_secs {
        return Err(WebhookAuthError::Stale {
            skew_secs: skew,
            window_secs,
        });
    }
    let expected = webhook_signature(secret_token, ts.trim(), body);
    if signatures_match(&expected, sig.trim()) {
        Ok(())
    } else {
        Err(WebhookAuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_signature_matches_zoom_test_vector() {
        let sig = handshake_signature(
            "test_client_id",
            "test_client_secret",
            "4lo+kM3nQ/ut1P2xQ9Zy2w==",
            "03db704592624398931a588dd78200cb",
        );
        assert_eq!(
            sig,
            "135383de5afab1a093f6ef16af806a37e4adaf003220311d01ba6ead52551633"
        );
    }

    #[test]
    fn webhook_round_trip_and_rejections() {
        let body = br#"{"event":"meeting.rtms_started","payload":{}}"#;
        let sig = webhook_signature("tok", "1700000000", body);
        assert!(sig.starts_with("v0="));
        assert_eq!(
            verify_webhook(
                "tok",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_000_010,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify_webhook(
                "other",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_000_010,
                300
            ),
            Err(WebhookAuthError::Mismatch)
        );
        assert!(matches!(
            verify_webhook(
                "tok",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_000_301,
                300
            ),
            Err(WebhookAuthError::Stale { .. })
        ));
        assert_eq!(
            verify_webhook("tok", None, Some(&sig), body, 0, 300),
            Err(WebhookAuthError::MissingHeader("x-zm-request-timestamp"))
        );
        let mut altered = body.to_vec();
        altered[3] ^= 1;
        assert_eq!(
            verify_webhook(
                "tok",
                Some("1700000000"),
                Some(&sig),
                &altered,
                1_700_000_000,
                300
            ),
            Err(WebhookAuthError::Mismatch)
        );
    }

    #[test]
    fn url_validation_token_is_lowercase_hex() {
        let t = url_validation_token("secret", "abc");
        assert_eq!(t.len(), 64);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
