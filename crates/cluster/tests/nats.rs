//! The seam's contract on a real nats-server (started by each test, fresh data directory):
//! de-duplication, redelivery of what was not settled, compare-and-swap, watches, requests,
//! and what survives an engine restart.

#[path = "../../../tests/shared/nats.rs"]
mod nats_server;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nats_server::NatsServer;
use rtms_cluster::{ClusterStore, Logged, NatsAuth, NatsSettings, NatsStore, StoreError, Table};

/// Every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

fn settings(url: &str, ack_wait: Duration) -> NatsSettings {
    NatsSettings {
        url: url.into(),
        name: "test".into(),
        prefix: "t".into(),
        auth: NatsAuth::None,
        dedup_window: Duration::from_secs(7200),
        ack_wait,
        max_deliver: 5,
        timeout: Duration::from_secs(5),
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn server() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_webhook_is_logged_once_per_key() {
    let nats = server().await;
    let store = NatsStore::connect(&settings(&nats.url(), Duration::from_secs(5)))
        .await
        .unwrap();
    let body = Bytes::from_static(b"{\"event\":\"x\"}");
    assert_eq!(
        store.log_webhook("k1", body.clone()).await.unwrap(),
        Logged::New
    );
    assert_eq!(
        store.log_webhook("k1", body.clone()).await.unwrap(),
        Logged::Duplicate
    );
    assert_eq!(store.log_webhook("k2", body).await.unwrap(), Logged::New);
    let mut log = store.webhooks().await.unwrap();
    for _ in 0..2 {
        let w = within("a logged webhook", log.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.deliveries, 1);
        w.settle.ack().await.unwrap();
    }
    // Acknowledged and gone (work queue), yet still a duplicate within the window.
    assert_eq!(
        store
            .log_webhook("k1", Bytes::from_static(b"again"))
            .await
            .unwrap(),
        Logged::Duplicate
    );
}

#[tokio::test]
async fn a_webhook_taken_but_not_settled_goes_to_another_host_after_ack_wait() {
    let nats = server().await;
    let s = settings(&nats.url(), Duration::from_secs(1));
    let a = NatsStore::connect(&s).await.unwrap();
    let b = NatsStore::connect(&s).await.unwrap();
    a.log_webhook("k", Bytes::from_static(b"started"))
        .await
        .unwrap();
    let mut from_a = a.webhooks().await.unwrap();
    let taken = within("the first delivery", from_a.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.body, Bytes::from_static(b"started"));
    // Host a dies holding it: nothing settles it.
    drop(from_a);
    drop(taken);
    drop(a);
    let mut from_b = b.webhooks().await.unwrap();
    let again = within("the redelivery", from_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.body, Bytes::from_static(b"started"));
    assert_eq!(again.deliveries, 2, "handed out a second time");
    again
        .settle
        .retry(Duration::from_millis(100))
        .await
        .unwrap();
    let third = within("the asked-for retry", from_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.deliveries, 3);
    third.settle.ack().await.unwrap();
}

#[tokio::test]
async fn records_change_only_through_their_revision_and_watches_see_every_change() {
    let nats = server().await;
    let store = NatsStore::connect(&settings(&nats.url(), Duration::from_secs(5)))
        .await
        .unwrap();
    let key = "stream/with+odd=chars";
    let r1 = store
        .create(Table::Leases, key, Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create(Table::Leases, key, Bytes::from_static(b"b"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let r2 = store
        .update(Table::Leases, key, Bytes::from_static(b"c"), r1)
        .await
        .unwrap();
    assert!(r2 > r1);
    // A writer still holding r1 (a paused owner) is refused.
    assert!(matches!(
        store
            .update(Table::Leases, key, Bytes::from_static(b"stale"), r1)
            .await,
        Err(StoreError::Conflict {
            expected: Some(r)
        }) if r == r1
    ));
    assert!(matches!(
        store.delete(Table::Leases, key, Some(r1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get(Table::Leases, key).await.unwrap(),
        Some((Bytes::from_static(b"c"), r2))
    );
    let mut watch = store.watch(Table::Leases).await.unwrap();
    let first = within("the current record", watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.key.as_str(), first.revision, first.value),
        (key, r2, Some(Bytes::from_static(b"c")))
    );
    store.delete(Table::Leases, key, Some(r2)).await.unwrap();
    let gone = within("the deletion", watch.next()).await.unwrap().unwrap();
    assert_eq!((gone.key.as_str(), gone.value), (key, None));
    assert_eq!(store.get(Table::Leases, key).await.unwrap(), None);
    // A deleted key can be created again.
    store
        .create(Table::Leases, key, Bytes::from_static(b"new"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_request_reaches_the_host_it_names_and_fails_fast_when_none_listens() {
    let nats = server().await;
    let s = settings(&nats.url(), Duration::from_secs(5));
    let store = NatsStore::connect(&s).await.unwrap();
    let mut served = store.serve("host-b").await.unwrap();
    tokio::spawn(async move {
        while let Some(req) = served.next().await {
            let mut answer = b"seen ".to_vec();
            answer.extend_from_slice(&req.body);
            (req.reply)(Bytes::from(answer)).await;
        }
    });
    let answer = store
        .request(
            "host-b",
            Bytes::from_static(b"stop"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(answer, Bytes::from_static(b"seen stop"));
    let t0 = std::time::Instant::now();
    assert!(
        store
            .request("host-c", Bytes::from_static(b"x"), Duration::from_secs(5))
            .await
            .is_err()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "no responders is known at once"
    );
}

#[tokio::test]
async fn logged_webhooks_and_records_survive_an_engine_restart() {
    let nats = server().await;
    let s = settings(&nats.url(), Duration::from_secs(5));
    let store = NatsStore::connect(&s).await.unwrap();
    store
        .log_webhook("k", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let rev = store
        .put(Table::Hosts, "h", Bytes::from_static(b"load"))
        .await
        .unwrap();
    let mut link = store.link();
    assert!(*link.borrow_and_update(), "connected");
    let nats = tokio::task::spawn_blocking(move || nats.restart())
        .await
        .unwrap();
    within("the link to come back", async {
        while !*link.borrow_and_update() {
            link.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(
        store.get(Table::Hosts, "h").await.unwrap(),
        Some((Bytes::from_static(b"load"), rev))
    );
    let mut log = store.webhooks().await.unwrap();
    let w = within("the logged webhook", log.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.body, Bytes::from_static(b"kept"));
    w.settle.ack().await.unwrap();
    assert_eq!(
        store
            .log_webhook("k", Bytes::from_static(b"retry"))
            .await
            .unwrap(),
        Logged::Duplicate,
        "de-duplication outlives the restart"
    );
    drop(nats);
}
