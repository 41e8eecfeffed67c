//! Stand-ins for the services rtms-host plugins call, each speaking the provider's real public
//! protocol on 127.0.0.1, for tests and for `rtms-host demo --with-fakes`:
//!
//! - [`stt`]: a streaming speech-to-text WebSocket in the shape of Deepgram's live API
//!   (`/v1/listen`, `Authorization: Token`, linear16 audio, `Results` / `Metadata` messages,
//!   `KeepAlive` / `Finalize` / `CloseStream`). It "recognises" the text of a script by the
//!   position of the audio it received: the simulator's script lines come back as words.
//! - [`llm`]: an OpenAI-compatible `POST /v1/chat/completions` that answers with a
//!   deterministic summary of the transcript it was sent, with scriptable 429 / 5xx failures.
//! - [`chat`]: a Slack-style incoming webhook (`POST /services/...`, `{"text": ...}`, `ok`).
//! - [`recorded`]: any HTTP service, as recorded request / response pairs played back (what
//!   `rtms-host plugin test` serves a plugin that calls out), or recorded by forwarding.
//!
//! Every fake records what it received, so a test can assert on it, and bounds what a client
//! can make it hold.

pub mod chat;
mod http;
pub mod llm;
pub mod recorded;
pub mod stt;

pub use chat::ChatFake;
pub use llm::LlmFake;
pub use recorded::HttpFakes;
pub use stt::{Spoken, SttFake};
