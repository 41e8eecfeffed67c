//! Bad input never panics: random bytes and random mutations of real messages go through the
//! media decoder and the webhook envelope parser, which must answer with an error or a
//! value, never a panic. Seeds are fixed, so a failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtms_client::decode;
use rtms_proto::webhook::Envelope;

const SAMPLES: &[&str] = &[
    r#"{"msg_type":14,"content":{"user_id":16778240,"user_name":"Ann","data":"AAECAwQF","timestamp":1700000000000}}"#,
    r#"{"msg_type":17,"content":{"user_id":"x","user_name":"Ann","data":"hello there","timestamp":5,"start_time":1,"end_time":4,"language":9}}"#,
    r#"{"msg_type":18,"content":{"user_id":1,"user_name":"B","data":"{\"message_id\":\"m\"}","timestamp":5}}"#,
    r#"{"msg_type":6,"event":{"event_type":3,"participants":[{"user_id":1,"user_name":"A"}],"timestamp":9}}"#,
    r#"{"msg_type":12,"timestamp":99,"sequence":3}"#,
    r#"{"msg_type":2,"status_code":0,"media_server":{"server_urls":{"all":"wss://localhost/x"}}}"#,
    r#"{"msg_type":4,"status_code":0,"payload_encrypted":false,"media_params":{"audio":{"codec":1}}}"#,
    r#"{"msg_type":8,"state":4,"reason":6,"timestamp":1}"#,
    r#"{"msg_type":9,"rtms_session_id":"s","state":5,"stop_reason":6,"timestamp":1}"#,
    r#"{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"u","rtms_stream_id":"s","server_urls":"wss://x"}}"#,
    r#"{"event":"endpoint.url_validation","payload":{"plainToken":"abc"}}"#,
];

fn mutate(rng: &mut StdRng, s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    for _ in 0..rng.random_range(1..6) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..4) {
            0 => v[i] = rng.random(),
            1 => {
                v.remove(i);
            }
            2 => v.insert(i, b"{}[]\":,0-e\\"[rng.random_range(0..11)]),
            _ => v.truncate(i),
        }
    }
    v
}

#[test]
fn decoder_and_envelope_parser_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..20_000 {
        let input = if round % 5 == 0 {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        } else {
            mutate(&mut rng, SAMPLES[round % SAMPLES.len()].as_bytes())
        };
        let _ = decode(&input);
        if let Ok(env) = Envelope::parse(&input) {
            let _ = env.rtms_event();
        }
    }
}

#[test]
fn every_sample_is_accepted_unmutated() {
    for s in SAMPLES {
        if s.contains("\"event\":\"") {
            assert!(Envelope::parse(s.as_bytes()).is_ok(), "{s}");
        } else {
            assert!(decode(s.as_bytes()).is_ok(), "{s}");
        }
    }
}
