//! Contract 0.3: the started webhook's fields of April 2026 (`account_id`,
//! `is_original_host`, `meeting_id`, `webinar_id`) reach a 0.3 plugin's `session-info`, per
//! product, and the byte `length` of media messages its frames, beside a 0.1 plugin in the
//! same pipeline.

use rtms_proto::Product;
use rtms_sim::{Pace, Simulator};
use serde_json::Value;

use crate::harness::*;

/// The outputs of kind `kind` the plugin `plugin` emitted, from the JSON Lines sink.
fn outputs(path: &std::path::Path, plugin: &str, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("outputs.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("output JSON"))
        .filter(|v| v["plugin"] == plugin && v["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_webhook_fields_reach_a_0_3_plugin_beside_older_ones() {
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let extra = format!(
        "[[plugin]]\nname = \"details\"\ncomponent = {:?}\nmedia = [\"audio\", \"transcript\"]\n\
         [[plugin]]\nname = \"legacy\"\ncomponent = {:?}\nmedia = [\"transcript\"]\n",
        crate::util::component("details_v03").display().to_string(),
        crate::util::component("legacy_v01").display().to_string(),
    );
    let host = start_host(
        &sim,
        Setup {
            extra,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let mut meetings = Vec::new();
    for product in [Product::Meeting, Product::Webinar, Product::ContactCenter] {
        let m = start(&sim, &host, script(6, vec![]), product, Pace::Fast);
        let ledger = finish(&host, &m).await;
        meetings.push((product, m, ledger));
    }
    let path = host.dir.path().join("outputs.jsonl");
    let Host { svc, dir, .. } = host;
    within("shutdown", svc.shutdown()).await;
    let details = outputs(&path, "details", "details");
    let account = sim.config().account_id.clone();
    for (product, m, ledger) in &meetings {
        let d = details
            .iter()
            .map(|v| &v["data"])
            .find(|d| d["stream_id"] == m.stream_id())
            .unwrap_or_else(|| panic!("{product:?}: no details output in {details:?}"));
        // What the simulator's started webhook carried, field by field.
        let started: Value = serde_json::from_slice(&m.started_body()).unwrap();
        let p = &started["payload"];
        assert_eq!(d["account_id"], p["account_id"], "{product:?}: {d}");
        assert_eq!(d["is_original_host"], p["is_original_host"], "{product:?}");
        assert_eq!(d["meeting_number"], p["meeting_id"], "{product:?}");
        assert_eq!(d["webinar_id"], p["webinar_id"], "{product:?}");
        match product {
            Product::Meeting => {
                assert_eq!(d["account_id"], account.as_str());
                assert_eq!(d["is_original_host"], true);
                assert!(d["meeting_number"].as_str().unwrap().len() >= 10, "{d}");
                assert_eq!(d["webinar_id"], Value::Null);
            }
            Product::Webinar => {
                assert!(d["webinar_id"].is_string(), "{d}");
                assert_eq!(d["meeting_number"], Value::Null);
            }
            _ => {
                for k in [
                    "account_id",
                    "is_original_host",
                    "meeting_number",
                    "webinar_id",
                ] {
                    assert_eq!(d[k], Value::Null, "{product:?} carries no {k}");
                }
            }
        }
        // Both contracts got every frame; 0.3's audio frames carry the length Zoom stated.
        let lines = ledger_transcript(ledger).len() as u64;
        let audio = ledger.count(rtms_proto::MediaKind::Audio);
        assert!(audio > 0, "{product:?}: the meeting has audio");
        let count = |plugin| {
            outputs(&path, plugin, "count")
                .into_iter()
                .find(|c| c["stream_id"] == m.stream_id())
                .unwrap_or_else(|| panic!("{plugin} {product:?}: no count"))["data"]
                .clone()
        };
        assert_eq!(count("legacy")["frames"], lines, "{product:?}");
        let c = count("details");
        assert_eq!(c["frames"], lines + audio, "{product:?}: {c}");
        assert_eq!(c["with_length"], audio, "{product:?}: {c}");
        assert_eq!(c["mismatched"], 0, "{c}");
        assert_eq!(c["stray"], 0, "{c}");
    }
    drop(dir);
}

/// Contract 0.3's `video.request`: a plugin pins participant 3 at session start; the host,
/// following the first participant with video (one at a time), switches to 3 as soon as 3's
/// video is on. Without individual mode the request is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_3_plugin_pins_a_participants_individual_video() {
    use rtms_sim::EventKind::VideoOn;
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let plugin = |media: &str| {
        format!(
            "[[plugin]]\nname = \"details\"\ncomponent = {:?}\nmedia = [{media}]\n[plugin.config]\npin = \"3\"\n",
            crate::util::component("details_v03").display().to_string(),
        )
    };
    let script = rtms_sim::MeetingScript::builder()
        .participant(1, "Ann")
        .participant(2, "Bo")
        .participant(3, "Cy")
        .event(100, VideoOn, 1)
        .event(400, VideoOn, 2)
        .event(700, VideoOn, 3)
        .duration_ms(1500)
        .build()
        .unwrap();
    for individual in [true, false] {
        let video = if individual {
            "[rtms.video]\nmode = \"individual\"\nfollow = \"first-with-video\"\n"
        } else {
            ""
        };
        let host = start_host(
            &sim,
            Setup {
                extra: format!("{}{video}", plugin("\"video\"")),
                ..Default::default()
            },
            |_| {},
        )
        .await;
        let m = start(
            &sim,
            &host,
            script.clone(),
            Product::Meeting,
            Pace::Realtime,
        );
        let ledger = finish(&host, &m).await;
        let path = host.dir.path().join("outputs.jsonl");
        let Host { svc, dir, .. } = host;
        within("shutdown", svc.shutdown()).await;
        let asked: Vec<(i64, bool, u32)> = ledger
            .video_subscriptions
            .iter()
            .map(|s| (s.user_id, s.subscribe, s.status))
            .collect();
        if individual {
            assert_eq!(outputs(&path, "details", "video_pinned").len(), 1);
            assert_eq!(asked, vec![(1, true, 0), (1, false, 0), (3, true, 0)]);
            assert!(ledger.video_by_user[&3] > 0, "{:?}", ledger.video_by_user);
        } else {
            let refused = outputs(&path, "details", "video_refused");
            assert_eq!(refused.len(), 1, "{refused:?}");
            let why = refused[0]["message"].as_str().unwrap_or_default();
            assert!(why.contains("mode = \"individual\""), "{why}");
            assert!(asked.is_empty(), "{asked:?}");
        }
        drop(dir);
    }
}

/// Contract 0.3's `events.decode`: a scripted meeting's participant-video and chat-group
/// changes reach a 0.3 plugin typed, in the order the simulator's ledger sent them, with
/// the fields the simulator put in them. A pipeline that does not subscribe to those event
/// types gets none of them, and the simulator sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_group_and_video_events_reach_a_0_3_plugin_typed() {
    use rtms_sim::ChatGroupAction::*;
    use rtms_sim::EventKind::{VideoOff, VideoOn};
    let sim = Simulator::start(sim_config(false)).await.unwrap();
    let script = rtms_sim::MeetingScript::builder()
        .participant(1, "Ann")
        .participant(2, "Bo")
        .participant(3, "Cy")
        .chat_group(100, Create, "g1", &[], None)
        .event(150, VideoOn, 3)
        .chat_group(200, MembersAdd, "g1", &[1, 2], None)
        .chat_group(300, MemberStatusUpdate, "g1", &[2], Some(1))
        .chat_group(400, MembersDelete, "g1", &[1], None)
        .event(450, VideoOff, 3)
        .chat_group(500, Delete, "g1", &[], None)
        .duration_ms(800)
        .build()
        .unwrap();
    let plugin = format!(
        "[[plugin]]\nname = \"details\"\ncomponent = {:?}\nmedia = [\"event\"]\n[plugin.config]\ndecode_events = \"true\"\n",
        crate::util::component("details_v03").display().to_string(),
    );
    let typed = 8..=14u32;
    for subscribed in [true, false] {
        let events = if subscribed {
            r#"["participant-join", "participant-video-on", "participant-video-off", "chat-group-create", "chat-group-delete", "chat-group-members-add", "chat-group-members-delete", "chat-group-member-status-update"]"#
        } else {
            r#"["participant-join", "participant-leave", "active-speaker-change"]"#
        };
        let setup = Setup {
            extra: plugin.clone(),
            events,
            ..Default::default()
        };
        let host = start_host(&sim, setup, |_| {}).await;
        let m = start(&sim, &host, script.clone(), Product::Meeting, Pace::Fast);
        let ledger = finish(&host, &m).await;
        let path = host.dir.path().join("outputs.jsonl");
        let Host { svc, dir, .. } = host;
        within("shutdown", svc.shutdown()).await;
        let sent: Vec<u32> = ledger
            .events
            .iter()
            .copied()
            .filter(|t| typed.contains(t))
            .collect();
        let got: Vec<Value> = outputs(&path, "details", "typed_event")
            .into_iter()
            .map(|o| o["data"].clone())
            .collect();
        assert!(outputs(&path, "details", "event_refused").is_empty());
        let got_types: Vec<u32> = got
            .iter()
            .map(|d| d["event_type"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            got_types, sent,
            "the plugin got what the ledger sent: {got:?}"
        );
        if !subscribed {
            assert!(sent.is_empty(), "unsubscribed types were sent: {sent:?}");
            assert!(
                ledger
                    .events
                    .contains(&rtms_proto::codes::event_type::PARTICIPANT_JOIN),
                "{:?}",
                ledger.events
            );
            drop(dir);
            continue;
        }
        assert_eq!(sent, vec![10, 8, 12, 14, 13, 9, 11]);
        let member = |d: &Value, list: &str, i: usize| d[list][i].clone();
        assert_eq!(got[0]["action"], "create");
        assert_eq!(got[0]["chat_groups"][0]["chat_group_id"], "g1");
        assert_eq!(got[1]["on"], true);
        assert_eq!(got[1]["participants"], serde_json::json!([[3, "Cy"]]));
        assert_eq!(got[2]["action"], "members-add");
        let adds: Vec<&Value> = got[2]["members_update_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["user_id"])
            .collect();
        assert_eq!(adds, [1, 2]);
        assert_eq!(member(&got[2], "members_update_list", 1)["user_name"], "Bo");
        assert_eq!(got[3]["action"], "member-status-update");
        let st = member(&got[3], "member_status_update_list", 0);
        assert_eq!(
            (st["user_id"].clone(), st["status"].clone()),
            (2.into(), 1.into())
        );
        assert_eq!(got[4]["action"], "members-delete");
        assert_eq!(member(&got[4], "members_update_list", 0)["user_id"], 1);
        assert_eq!(got[5]["on"], false);
        assert_eq!(got[6]["action"], "delete");
        assert_eq!(got[6]["chat_groups"][0]["chat_group_id"], "g1");
        drop(dir);
    }
}
