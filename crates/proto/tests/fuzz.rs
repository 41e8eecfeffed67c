//! Fuzz targets for what the webhook ingress runs on a request, in its order: the signature
//! and timestamp check ([`verify_webhook`]), the envelope ([`Envelope::parse`]) and the RTMS
//! event in it ([`Envelope::rtms_event`]).
//!
//! Inputs: arbitrary bytes, structure-aware edits of valid webhooks (every product and action,
//! URL validation, a non-RTMS event) and byte edits of those. Properties: nothing panics, every
//! error has a message (and never the secret), a parsed event rebuilt with
//! [`WebhookEvent::to_body`] parses back to itself, and a body signed with the right secret is
//! accepted while any change to it is refused. `FUZZ_CASES` scales the run (docs/fuzzing.md).

mod fuzz_support;

use fuzz_support::*;
use proptest::prelude::*;
use rtms_proto::sign::{WebhookAuthError, verify_webhook, webhook_signature};
use rtms_proto::webhook::{Envelope, Product, WebhookAction, WebhookEvent};
use serde_json::{Value, json};

const KEYS: &[&str] = &[
    "event",
    "event_ts",
    "payload",
    "meeting_uuid",
    "webinar_uuid",
    "session_id",
    "engagement_id",
    "rtms_stream_id",
    "server_urls",
    "operator_id",
    "stop_reason",
    "plainToken",
];

const ACTIONS: [WebhookAction; 3] = [
    WebhookAction::Started,
    WebhookAction::Stopped,
    WebhookAction::Interrupted,
];

/// Valid webhooks: every product and action, URL validation, an event that is not RTMS.
fn samples() -> Vec<Value> {
    let mut v = Vec::new();
    for p in Product::ALL {
        for a in ACTIONS {
            let mut payload = json!({
                p.id_key(): "4lo+kM3nQ/ut1P2xQ9Zy2w==",
                "rtms_stream_id": "03db704592624398931a588dd78200cb",
                "server_urls": "wss://127.0.0.1:9/signaling",
                "operator_id": "op",
            });
            if a == WebhookAction::Stopped {
                payload["stop_reason"] = json!(6);
            }
            v.push(json!({"event": p.event_name(a), "event_ts": 1_700_000_000_000i64, "payload": payload}));
        }
    }
    v.push(json!({"event": "endpoint.url_validation", "payload": {"plainToken": "abc"}}));
    v.push(json!({"event": "meeting.started", "event_ts": 1, "payload": {"object": {"id": 1}}}));
    v
}

/// What the ingress does with a body once the signature passed; panics only on a broken
/// property.
fn check_body(body: &[u8]) {
    let env = match Envelope::parse(body) {
        Ok(env) => env,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    match env.rtms_event() {
        Ok(Some(ev)) => {
            let again = Envelope::parse(&ev.to_body())
                .expect("a rebuilt body parses")
                .rtms_event()
                .expect("a rebuilt event is valid");
            assert_eq!(
                again.as_ref(),
                Some(&ev),
                "{}",
                String::from_utf8_lossy(body)
            );
            // A stop reason is the payload's number or nothing: never a truncated number.
            let raw = env.payload.get("stop_reason").and_then(Value::as_u64);
            assert_eq!(
                ev.stop_reason.map(u64::from),
                raw.filter(|r| *r <= u32::MAX as u64)
            );
        }
        Ok(None) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn arb_sample() -> impl Strategy<Value = Value> {
    proptest::sample::select(samples())
}

/// A header value as an attacker may send it.
fn arb_header() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            arb_string(),
            any::<i64>().prop_map(|n| n.to_string()),
            "v0=[0-9a-f]{0,70}",
            "[ \t]{0,2}[0-9]{1,20}[ \t]{0,2}",
        ],
    )
}

fn arb_event() -> impl Strategy<Value = WebhookEvent> {
    (
        proptest::sample::select(Product::ALL.to_vec()),
        proptest::sample::select(ACTIONS.to_vec()),
        any::<i64>(),
        any::<String>(),
        any::<String>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(product, action, event_ts, id, stream_id, url, operator_id, stop)| {
                let server_url = match action {
                    WebhookAction::Started => Some(url.unwrap_or_default()),
                    _ => url,
                };
                WebhookEvent {
                    details: Default::default(),
                    product,
                    action,
                    event: product.event_name(action),
                    event_ts,
                    id,
                    stream_id,
                    server_url,
                    operator_id,
                    stop_reason: stop,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn the_envelope_parser_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_body(&body);
    }

    #[test]
    fn the_envelope_parser_never_panics_on_edited_webhooks(
        sample in arb_sample(),
        edits in proptest::collection::vec(arb_edit(KEYS), 1..4),
    ) {
        let body = serde_json::to_vec(&apply_edits(&sample, &edits)).expect("JSON serializes");
        check_body(&body);
    }

    #[test]
    fn the_envelope_parser_never_panics_on_byte_edited_webhooks(
        sample in arb_sample(),
        edits in proptest::collection::vec(arb_byte_edit(), 1..6),
    ) {
        let text = serde_json::to_vec(&sample).expect("JSON serializes");
        check_body(&apply_byte_edits(&text, &edits));
    }

    #[test]
    fn every_rtms_event_round_trips_through_its_body(ev in arb_event()) {
        let body = ev.to_body();
        let parsed = Envelope::parse(&body).expect("parses").rtms_event().expect("valid");
        prop_assert_eq!(parsed, Some(ev));
    }

    #[test]
    fn verification_never_panics_and_never_leaks_the_secret(
        secret in "[A-Za-z0-9]{16,32}",
        ts in arb_header(),
        sig in arb_header(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in prop_oneof![any::<i64>(), Just(1_700_000_000i64)],
        window in prop_oneof![any::<u64>(), 0u64..600],
    ) {
        if let Err(e) = verify_webhook(&secret, ts.as_deref(), sig.as_deref(), &body, now, window) {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            prop_assert!(!msg.contains(&secret), "{}", msg);
        }
    }

    #[test]
    fn a_signed_body_is_accepted_and_any_change_refused(
        secret in "[A-Za-z0-9]{16,32}",
        sample in arb_sample(),
        skew in -300i64..=300,
        flip in any::<usize>(),
        bit in 0u8..8,
    ) {
        let now = 1_700_000_000i64;
        let ts = (now + skew).to_string();
        let body = serde_json::to_vec(&sample).expect("JSON serializes");
        let sig = webhook_signature(&secret, &ts, &body);
        prop_assert_eq!(verify_webhook(&secret, Some(&ts), Some(&sig), &body, now, 300), Ok(()));
        // Header whitespace is tolerated, as HTTP allows.
        let padded = format!(" {ts} ");
        prop_assert_eq!(verify_webhook(&secret, Some(&padded), Some(&sig), &body, now, 300), Ok(()));
        let mut changed = body.clone();
        let i = flip % changed.len();
        changed[i] ^= 1 << bit;
        prop_assert_eq!(
            verify_webhook(&secret, Some(&ts), Some(&sig), &changed, now, 300),
            Err(WebhookAuthError::Mismatch)
        );
        let other = format!("{secret}x");
        prop_assert_eq!(
            verify_webhook(&other, Some(&ts), Some(&sig), &body, now, 300),
            Err(WebhookAuthError::Mismatch)
        );
        let stale = verify_webhook(&secret, Some(&ts), Some(&sig), &body, now + 301 + skew.abs() * 2, 300);
        prop_assert!(
            matches!(stale, Err(WebhookAuthError::Stale { .. })),
            "{:?}",
            stale
        );
    }
}

/// Found by the fuzz target above: a timestamp header far from now overflowed the skew
/// subtraction (a panic in debug builds, a wrong skew in release).
#[test]
fn an_extreme_timestamp_is_stale_not_a_panic() {
    for ts in ["-9223372036854775808", "9223372036854775807"] {
        for now in [i64::MIN, -1, 0, 1_700_000_000, i64::MAX] {
            let r = verify_webhook(
                "secret-token-0123",
                Some(ts),
                Some("v0=00"),
                b"{}",
                now,
                300,
            );
            assert!(
                matches!(
                    r,
                    Err(WebhookAuthError::Stale { .. }) | Err(WebhookAuthError::Mismatch)
                ),
                "ts {ts} now {now}: {r:?}"
            );
        }
    }
}

/// Found by the fuzz target above: a `stop_reason` past `u32::MAX` was truncated into a
/// different, valid-looking reason.
#[test]
fn a_stop_reason_too_large_for_u32_is_not_truncated() {
    let body = br#"{"event":"meeting.rtms_stopped","event_ts":1,"payload":{"meeting_uuid":"u","rtms_stream_id":"s","stop_reason":4294967302}}"#;
    let ev = Envelope::parse(body)
        .unwrap()
        .rtms_event()
        .unwrap()
        .unwrap();
    assert_eq!(ev.stop_reason, None);
}
