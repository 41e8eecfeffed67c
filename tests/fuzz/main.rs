//! Fuzz targets of rtms-host (see docs/fuzzing.md): the Zoom App's context decoder and the
//! checks that follow it, which anyone who can reach the webhook listener can feed.
//!
//! - any header (arbitrary text; arbitrary bytes in base64) is refused with a message, never
//!   a panic;
//! - a context built from arbitrary fields, sealed, decodes to itself;
//! - any JSON document (a context edited: values replaced, keys removed or added) sealed with
//!   the right secret decodes or is refused with a message;
//! - byte edits of a sealed envelope never panic, and whatever still decodes is the original
//!   context (the envelope is authenticated);
//! - the freshness, replay, rate and role checks never panic for any `ts`, `exp` and clock.
//!
//! `FUZZ_CASES` scales the run.

#[path = "../../crates/proto/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use base64::Engine as _;
use fuzz_support::*;
use proptest::prelude::*;
use rtms_host::flows::app_guard::Guard;
use rtms_host::flows::zoom_app::{AppContext, decrypt_context, encrypt_context, seal};
use rtms_host::flows::zoom_rest::Action;

const SECRET: &str = "app-client-secret";
const KEYS: &[&str] = &[
    "typ",
    "uid",
    "mid",
    "ts",
    "exp",
    "attendrole",
    "role",
    "aud",
];

fn arb_context() -> impl Strategy<Value = AppContext> {
    (
        arb_string(),
        arb_string(),
        proptest::option::of(arb_string()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(arb_string()),
    )
        .prop_map(|(typ, uid, mid, ts, exp, attendrole)| AppContext {
            typ,
            uid,
            mid,
            ts,
            exp,
            attendrole,
        })
}

fn sample() -> serde_json::Value {
    serde_json::json!({
        "typ": "meeting", "uid": "u1", "mid": "abc==", "ts": 1_800_000_000_000u64,
        "exp": 1_800_000_060_000u64, "attendrole": "host"
    })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn any_header_is_refused_with_a_message(text in ".{0,600}", bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for h in [text, base64::engine::general_purpose::STANDARD.encode(&bytes)] {
            if let Err(e) = decrypt_context(&h, SECRET) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn a_sealed_context_decodes_to_itself(ctx in arb_context()) {
        let sealed = encrypt_context(&ctx, SECRET);
        if sealed.len() <= 4096 {
            prop_assert_eq!(decrypt_context(&sealed, SECRET).unwrap(), ctx);
        }
    }

    #[test]
    fn any_sealed_json_decodes_or_is_refused(edits in proptest::collection::vec(arb_edit(KEYS), 0..6)) {
        let doc = apply_edits(&sample(), &edits);
        let sealed = seal(doc.to_string().as_bytes(), SECRET);
        match decrypt_context(&sealed, SECRET) {
            Ok(c) => prop_assert_eq!(serde_json::from_value::<AppContext>(doc).ok(), Some(c)),
            Err(e) => prop_assert!(e.contains("too long") || e.contains("not the expected JSON"), "{}", e),
        }
    }

    #[test]
    fn an_edited_envelope_never_decodes_to_anything_else(edits in proptest::collection::vec(arb_byte_edit(), 1..6)) {
        let ctx: AppContext = serde_json::from_value(sample()).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encrypt_context(&ctx, SECRET))
            .unwrap();
        let edited = apply_byte_edits(&raw, &edits);
        let header = base64::engine::general_purpose::STANDARD.encode(&edited);
        if let Ok(c) = decrypt_context(&header, SECRET) {
            prop_assert_eq!(c, ctx);
        }
    }

    #[test]
    fn the_checks_never_panic(ctx in arb_context(), now in any::<u64>(), header in ".{0,64}", meeting in ".{0,16}") {
        let g = Guard::default();
        for action in [Action::Start, Action::Stop, Action::Pause, Action::Resume] {
            if let Err((status, why)) = g.check(&header, &ctx, &meeting, action, now) {
                prop_assert!((400..500).contains(&status) && !why.is_empty());
            }
        }
    }
}
