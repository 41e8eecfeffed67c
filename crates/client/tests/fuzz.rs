//! Fuzz targets for the media decoder ([`decode`]): every message a signaling or media socket
//! receives goes through it, so bad input must come back as an error or a value, never a
//! panic.
//!
//! Inputs: arbitrary bytes, structure-aware edits of real messages (media 14-18, events,
//! keep-alives, handshake responses, state updates) and byte edits of those. Properties:
//! nothing panics, every error has a message, a media message built from arbitrary fields
//! decodes back to those fields. `FUZZ_CASES` scales the run (docs/fuzzing.md).

#[path = "../../proto/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use base64::Engine as _;
use fuzz_support::*;
use proptest::prelude::*;
use rtms_client::{Decoded, MediaKind, decode};
use serde_json::{Value, json};

const SAMPLES: &[&str] = &[
    r#"{"msg_type":14,"content":{"user_id":16778240,"user_name":"Ann","data":"AAECAwQF","timestamp":1700000000000}}"#,
    r#"{"msg_type":15,"content":{"user_id":16778240,"user_name":"Ann","data":"/9j/4AAQ","timestamp":1700000000000}}"#,
    r#"{"msg_type":16,"content":{"user_id":1,"user_name":"Ann","data":"data:image/jpeg;base64,/9j/4AAQ","timestamp":1}}"#,
    r#"{"msg_type":17,"content":{"user_id":"x","user_name":"Ann","data":"hello there","timestamp":5,"start_time":1,"end_time":4,"language":9}}"#,
    r#"{"msg_type":18,"content":{"user_id":1,"user_name":"B","data":"{\"message_id\":\"m\"}","timestamp":5}}"#,
    r#"{"msg_type":6,"event":{"event_type":3,"participants":[{"user_id":1,"user_name":"A"}],"timestamp":9}}"#,
    r#"{"msg_type":12,"timestamp":99,"sequence":3}"#,
    r#"{"msg_type":2,"status_code":0,"media_server":{"server_urls":{"all":"wss://localhost/x"}}}"#,
    r#"{"msg_type":4,"status_code":0,"payload_encrypted":false,"media_params":{"audio":{"codec":1}}}"#,
    r#"{"msg_type":8,"state":4,"reason":6,"timestamp":1}"#,
    r#"{"msg_type":9,"rtms_session_id":"s","state":5,"stop_reason":6,"timestamp":1}"#,
];

const KEYS: &[&str] = &[
    "msg_type",
    "content",
    "user_id",
    "channel_id",
    "user_name",
    "data",
    "timestamp",
    "start_time",
    "end_time",
    "language",
    "event",
    "event_type",
    "participants",
    "sequence",
    "status_code",
    "media_server",
    "server_urls",
    "media_params",
    "state",
    "reason",
    "stop_reason",
    "rtms_session_id",
];

fn sample_values() -> Vec<Value> {
    SAMPLES
        .iter()
        .map(|s| serde_json::from_str(s).expect("sample is JSON"))
        .collect()
}

fn check(bytes: &[u8]) {
    if let Err(e) = decode(bytes) {
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn the_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes);
    }

    #[test]
    fn the_decoder_never_panics_on_edited_messages(
        sample in proptest::sample::select(sample_values()),
        edits in proptest::collection::vec(arb_edit(KEYS), 1..4),
    ) {
        check(&serde_json::to_vec(&apply_edits(&sample, &edits)).expect("JSON serializes"));
    }

    #[test]
    fn the_decoder_never_panics_on_byte_edited_messages(
        sample in proptest::sample::select(SAMPLES),
        edits in proptest::collection::vec(arb_byte_edit(), 1..6),
    ) {
        check(&apply_byte_edits(sample.as_bytes(), &edits));
    }

    #[test]
    fn a_media_message_decodes_to_its_fields(
        ty in 14u32..=16,
        user_id in any::<i64>(),
        user_name in any::<String>(),
        payload in proptest::collection::vec(any::<u8>(), 0..128),
        timestamp in any::<u64>(),
        padded in any::<bool>(),
    ) {
        let engine = if padded {
            base64::engine::general_purpose::STANDARD
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD
        };
        let msg = json!({"msg_type": ty, "content": {
            "user_id": user_id, "user_name": user_name,
            "data": engine.encode(&payload), "timestamp": timestamp,
        }});
        let Decoded::Frame(f) = decode(&serde_json::to_vec(&msg).expect("JSON")).expect("decodes") else {
            panic!("not a frame");
        };
        let kind = [MediaKind::Audio, MediaKind::Video, MediaKind::Share][(ty - 14) as usize];
        prop_assert_eq!(f.kind, kind);
        prop_assert_eq!(f.payload, payload);
        prop_assert_eq!(f.user_id, user_id.to_string());
        prop_assert_eq!(f.user_name, user_name);
        prop_assert_eq!(f.timestamp_ms, timestamp);
    }

    #[test]
    fn a_transcript_decodes_to_its_text(
        text in any::<String>(),
        start in any::<u64>(),
        end in any::<u64>(),
        language in any::<i32>(),
    ) {
        let msg = json!({"msg_type": 17, "content": {
            "user_id": 7, "user_name": "Ann", "data": text, "timestamp": end,
            "start_time": start, "end_time": end, "language": language,
        }});
        let Decoded::Frame(f) = decode(&serde_json::to_vec(&msg).expect("JSON")).expect("decodes") else {
            panic!("not a frame");
        };
        prop_assert_eq!(f.text.as_deref(), Some(text.as_str()));
        let t = f.transcript.expect("transcript info");
        prop_assert_eq!((t.start_ms, t.end_ms, t.language), (start, end, language));
    }
}

#[test]
fn every_sample_is_accepted_unmutated() {
    for s in SAMPLES {
        assert!(decode(s.as_bytes()).is_ok(), "{s}");
    }
}
