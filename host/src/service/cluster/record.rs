//! What the hosts of a cluster write to the engine: one lease record per stream, one host
//! record per host. JSON, so an operator can read them with the engine's own tools.

use bytes::Bytes;
use rtms_proto::WebhookEvent;
use serde::{Deserialize, Serialize};

use crate::service::journal::{JournalEntry, now_ms};

/// A stream's lease: who runs it, and what a new owner needs to resume it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The host that runs the stream, or is to run it. Empty: any host may take it now.
    pub owner: String,
    /// Chosen by the owner when it took the lease and carried by each of its writes, so a
    /// write the engine applied but whose answer was lost is recognised as its own. 0 until
    /// the owner started the stream.
    pub token: u64,
    /// How many owners started the stream so far: 0 until the first did (its plugins see
    /// `resumed = false`), more after a takeover (`resumed = true`).
    pub runs: u32,
    /// Unix milliseconds of the write, for operators (hosts never compare clocks).
    pub written_ms: u64,
    /// The stream's journal entry as of the write: ids, URLs, the next `seq`, the plugins'
    /// session state.
    pub entry: JournalEntry,
}

impl LeaseRecord {
    /// The record of a stream no host has started yet, to be run by `owner`.
    pub fn assigned(ev: &WebhookEvent, owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            token: 0,
            runs: 0,
            written_ms: now_ms(),
            entry: JournalEntry {
                stream_id: ev.stream_id.clone(),
                product: ev.product,
                meeting_id: ev.id.clone(),
                operator_id: ev.operator_id.clone(),
                server_url: ev.server_url.clone().unwrap_or_default(),
                media_urls: None,
                state: "assigned".into(),
                next_seq: 0,
                plugin_state: Vec::new(),
                details: ev.details.clone(),
            },
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The record in `bytes`; `None` when it is not one (logged by the caller).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A host's liveness and load, rewritten every renewal interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Streams it runs.
    pub streams: usize,
    /// `rtms.max_streams`.
    pub max_streams: usize,
    /// It hands its streams over and takes no new one.
    pub draining: bool,
    /// Unix milliseconds of the write, for operators.
    pub written_ms: u64,
}

impl HostRecord {
    /// Room for more streams.
    pub fn room(&self) -> usize {
        self.max_streams.saturating_sub(self.streams)
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtms_proto::webhook::{StartedDetails, WebhookAction};
    use rtms_proto::{Product, WebhookEvent};

    /// A lease carries the started webhook's April 2026 fields to the host that takes the
    /// stream over, and a lease written before they existed still parses, without them.
    #[test]
    fn a_lease_carries_the_started_webhooks_fields_and_old_leases_parse() {
        let details = StartedDetails {
            account_id: Some("acct".into()),
            is_original_host: Some(true),
            meeting_id: Some("81234567890".into()),
            webinar_id: None,
        };
        let ev = WebhookEvent {
            product: Product::Meeting,
            action: WebhookAction::Started,
            event: "meeting.rtms_started".into(),
            event_ts: 1,
            id: "m==".into(),
            stream_id: "s1".into(),
            server_url: Some("wss://127.0.0.1:1".into()),
            operator_id: None,
            stop_reason: None,
            details: details.clone(),
        };
        let rec = LeaseRecord::assigned(&ev, "host-a");
        let back = LeaseRecord::parse(&rec.to_bytes()).expect("parses");
        assert_eq!(back.entry.details, details);
        assert_eq!(back, rec);
        let mut old = serde_json::to_value(&rec).unwrap();
        old["entry"].as_object_mut().unwrap().remove("details");
        let old = LeaseRecord::parse(old.to_string().as_bytes()).expect("an old lease parses");
        assert!(old.entry.details.is_empty());
        assert_eq!(old.entry.stream_id, "s1");
    }
}
