//! The contract's types to and from the ones the rest of the project speaks: media kinds
//! (`rtms_proto`), severities (`rtms_config`) and end reasons (`rtms_client`). The sandbox
//! knows none of those crates; the embedder converts at its edge.

use crate::sandbox::bindings;

impl From<rtms_proto::MediaKind> for bindings::MediaKind {
    fn from(k: rtms_proto::MediaKind) -> Self {
        use rtms_proto::MediaKind as K;
        match k {
            K::Audio => bindings::MediaKind::Audio,
            K::Video => bindings::MediaKind::Video,
            K::Share => bindings::MediaKind::Share,
            K::Transcript => bindings::MediaKind::Transcript,
            K::Chat => bindings::MediaKind::Chat,
            K::Event => bindings::MediaKind::Event,
        }
    }
}

impl From<bindings::MediaKind> for rtms_proto::MediaKind {
    fn from(k: bindings::MediaKind) -> Self {
        use rtms_proto::MediaKind as K;
        match k {
            bindings::MediaKind::Audio => K::Audio,
            bindings::MediaKind::Video => K::Video,
            bindings::MediaKind::Share => K::Share,
            bindings::MediaKind::Transcript => K::Transcript,
            bindings::MediaKind::Chat => K::Chat,
            bindings::MediaKind::Event => K::Event,
        }
    }
}

impl From<bindings::Severity> for rtms_config::Severity {
    fn from(s: bindings::Severity) -> Self {
        use rtms_config::Severity as S;
        match s {
            bindings::Severity::Info => S::Info,
            bindings::Severity::Notice => S::Notice,
            bindings::Severity::Warning => S::Warning,
            bindings::Severity::Critical => S::Critical,
        }
    }
}

impl From<rtms_client::EndReason> for bindings::EndReason {
    fn from(r: rtms_client::EndReason) -> Self {
        use rtms_client::EndReason as E;
        match r {
            E::Stopped(reason) => bindings::EndReason::Stopped(reason),
            E::ConnectionLost => bindings::EndReason::ConnectionLost,
            // The stream goes on at another host; this one only shuts its side down.
            E::Shutdown | E::HandedOff | E::Fenced => bindings::EndReason::Shutdown,
        }
    }
}
