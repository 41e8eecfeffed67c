//! Plugin state (contract 0.2) in a live meeting: a counter kept in the host's state store
//! survives a hundred reloads and a trap restart with exact counts, beside a 0.1 plugin that
//! runs unchanged; a session's scope is gone after the session ends, the plugin's after the
//! plugin leaves the pipeline; a scope's bounds refuse a write with an error the guest sees.

use std::path::Path;

use rtms_host::sandbox::state::ScopeKey;

use crate::rig::*;
use crate::util::component;

fn sink(dir: &Path) -> String {
    format!(
        "\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        dir.join("outputs.jsonl").display()
    )
}

/// The outputs of `plugin` of kind `kind`, their `data`.
fn outputs(dir: &Path, plugin: &str, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("outputs.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["plugin"] == plugin && v["kind"] == kind)
        .map(|v| v["data"].clone())
        .collect()
}

fn stateful(i: usize) -> PluginToml {
    // A config change each time: every reload builds new instances.
    PluginToml::new("counter", component("stateful"))
        .cfg("trap_once", "1")
        .cfg("trap_after", "20")
        .cfg("generation", &i.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_hundred_reloads_and_a_trap_beside_a_0_1_plugin_then_goes() {
    let rig = Rig::new().await;
    let legacy = PluginToml::new("legacy", component("legacy_v01"));
    let mut p = PipelineToml::new(vec![stateful(0), legacy.clone()]);
    p.extra = sink(rig.path());
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "state-hundred", 600);
    delivered_beyond(&svc, "counter", 0).await;
    for i in 1..=100 {
        p.plugins[0] = stateful(i);
        rig.write_pipeline(&p);
        match svc.reload().await {
            rtms_host::pipeline::reload::Outcome::Applied { .. } => {}
            other => panic!("reload {i} was not applied: {other:?}"),
        }
    }
    // Swaps happen in band, at the next batch boundary of the live session.
    wait_for(
        "every reload to swap the live instance",
        std::time::Duration::from_secs(10),
        || plugin(&svc.metrics(), "counter").swaps >= 100,
    )
    .await;
    let store = svc.shared().rt.state().clone();
    let session = ScopeKey::session("counter", "state-hundred");
    assert!(store.usage(&session).0 > 0, "the session scope is live");
    let (_, m) = finish(svc, meeting).await;

    let counter = plugin(&m, "counter");
    assert_eq!(counter.traps, 1, "trap_once traps exactly once");
    let ends = outputs(rig.path(), "counter", "state");
    let last = ends.last().expect("a state output at session end");
    // Every frame the plugin handled was counted once, across 100 versions and a restart;
    // the trapped batch (dead-lettered) counted nothing.
    assert_eq!(last["session"], counter.delivered, "{ends:?}");
    assert_eq!(last["plugin"], counter.delivered, "{ends:?}");
    assert_eq!(counter.delivered + counter.dead_lettered, counter.routed);
    // The 0.1 plugin ran beside it on the same frames.
    let legacy_counts = outputs(rig.path(), "legacy", "count");
    let legacy_m = plugin(&m, "legacy");
    assert!(legacy_m.delivered > 0 && legacy_m.traps == 0);
    assert_eq!(legacy_counts.last().unwrap()["frames"], legacy_m.delivered);
    // The session ended: its scope is gone; the plugin's stays.
    assert_eq!(store.usage(&session), (0, 0));
    assert!(store.usage(&ScopeKey::plugin("counter")).0 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_plugin_clears_its_state_and_bounds_refuse_writes_the_guest_sees() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![
        PluginToml::new("counter", component("stateful")).cfg("fill", "1"),
        PluginToml::new("legacy", component("legacy_v01")),
    ]);
    // `extra` follows the last plugin's tables: the bounds are the counter's.
    p.plugins.swap(0, 1);
    p.extra = format!("\n[plugin.state]\nmax_keys = 5\n{}", sink(rig.path()));
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "state-remove", 400);
    delivered_beyond(&svc, "counter", 5).await;
    let bounds = outputs(rig.path(), "counter", "bounds");
    let b = &bounds[0];
    // Five keys fit; the sixth was refused with the bound named, and the plugin went on.
    assert_eq!(b["written"], 5, "{bounds:?}");
    assert!(b["error"].as_str().unwrap().contains("max_keys = 5"), "{b}");
    assert_eq!(plugin(&svc.metrics(), "counter").state_refused, 1);
    let store = svc.shared().rt.state().clone();
    assert!(store.usage(&ScopeKey::plugin("counter")).0 > 0);

    p.plugins.retain(|x| x.name != "counter");
    p.extra = sink(rig.path());
    rig.write_pipeline(&p);
    assert!(matches!(
        svc.reload().await,
        rtms_host::pipeline::reload::Outcome::Applied { .. }
    ));
    wait_for(
        "the counter to drain",
        std::time::Duration::from_secs(8),
        || !outputs(rig.path(), "counter", "state").is_empty(),
    )
    .await;
    wait_for(
        "the counter's state to go",
        std::time::Duration::from_secs(8),
        || {
            store.usage(&ScopeKey::plugin("counter")) == (0, 0)
                && store.usage(&ScopeKey::session("counter", "state-remove")) == (0, 0)
        },
    )
    .await;
    let _ = finish(svc, meeting).await;
}

/// `GET /metrics` on the service's admin listener, as text.
async fn metrics_text(svc: &rtms_host::service::Service) -> String {
    use http_body_util::BodyExt;
    let addr = svc.admin_addr().expect("the admin listener runs");
    let resp = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>()
        .get(format!("http://{addr}/metrics").parse().unwrap())
        .await
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_past_the_session_cap_is_refused_and_the_totals_are_in_metrics() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![
        PluginToml::new("legacy", component("legacy_v01")),
        PluginToml::new("metered", component("stateful")).cfg("units", "1"),
    ]);
    p.extra = format!(
        "\n[plugin.limits]\nunits_per_session = 10\n{}",
        sink(rig.path())
    );
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "state-budget", 200);
    delivered_beyond(&svc, "metered", 15).await;
    let refused = outputs(rig.path(), "metered", "budget");
    let text = refused[0]["error"].as_str().unwrap();
    assert!(text.contains("10"), "the guest saw the cap: {text}");
    let m = plugin(&svc.metrics(), "metered");
    assert_eq!(m.units.get("frames"), Some(&10), "{:?}", m.units);
    assert!(m.units_refused >= 1);
    let exposition = metrics_text(&svc).await;
    assert!(
        exposition.contains(r#"rtms_plugin_units_total{plugin="metered",what="frames"} 10"#),
        "{}",
        exposition
            .lines()
            .filter(|l| l.contains("units"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (_, m) = finish(svc, meeting).await;
    let end = outputs(rig.path(), "metered", "state");
    assert_eq!(
        end.last().unwrap()["units"],
        10,
        "a session's charges stop at its cap"
    );
    assert_eq!(plugin(&m, "metered").units.get("frames"), Some(&10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_filtered_off_a_session_keeps_its_plugin_state() {
    let rig = Rig::new().await;
    let mut p = PipelineToml::new(vec![PluginToml::new("counter", component("stateful"))]);
    p.extra = sink(rig.path());
    let svc = rig.start(&p).await;
    let meeting = rig.meeting(&svc, "state-filtered", 400);
    delivered_beyond(&svc, "counter", 3).await;
    let store = svc.shared().rt.state().clone();
    let plugin_scope = ScopeKey::plugin("counter");
    assert!(store.usage(&plugin_scope).0 > 0);
    // The plugin stays in the pipeline but no longer serves this meeting: its session ends
    // (reason `removed`), and only the session's scope may go.
    let text = p.render(rig.path()).replace(
        "name = \"counter\"\n",
        "name = \"counter\"\nmeeting_ids = [\"another-meeting\"]\n",
    );
    rig.write_pipeline_text(&text);
    assert!(matches!(
        svc.reload().await,
        rtms_host::pipeline::reload::Outcome::Applied { .. }
    ));
    wait_for(
        "the session to end for the counter",
        std::time::Duration::from_secs(8),
        || !outputs(rig.path(), "counter", "state").is_empty(),
    )
    .await;
    wait_for(
        "the session scope to go",
        std::time::Duration::from_secs(8),
        || store.usage(&ScopeKey::session("counter", "state-filtered")) == (0, 0),
    )
    .await;
    assert!(store.usage(&plugin_scope).0 > 0, "the plugin scope is kept");
    let _ = finish(svc, meeting).await;
}
