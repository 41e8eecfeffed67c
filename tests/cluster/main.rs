//! The cluster end to end: real `rtms-host run` processes joined through a real nats-server
//! (started by each test on 127.0.0.1 with a fresh data directory; the tests fail, never
//! skip, when it is not installed: run `scripts/install-nats`), the simulator's meetings
//! behind a TCP balancer, and every assertion made against the simulator's ledger and what
//! the plugins wrote.
//!
//! - `failover`: `kill -9` of a host mid-meeting; every meeting goes on at another host.
//! - `webhooks`: a webhook acknowledged by a host that dies before acting is still served.
//! - `pause`: a host paused past its lease (SIGSTOP) writes nothing once resumed.
//! - `drain`: SIGTERM hands a host's streams to the others; no meeting ends.
//! - `ready`: `/readyz` says "at the stream cap" and then "draining", so a balancer steers
//!   away; a start through the REST API on one host answers for a webhook another took.
//! - `engine`: the engine restarted under load; no meeting ends, no webhook is lost.
//! - `traffic`: what a lease renewal costs the engine.
//!
//! The tests run one at a time ([`rig::ONE_AT_A_TIME`]).

#[path = "../shared/host_process.rs"]
mod host_process;
#[path = "../shared/nats.rs"]
mod nats;
#[path = "../shared/record.rs"]
mod record;
#[path = "../all/util.rs"]
mod util;

#[path = "../shared/cluster_rig.rs"]
mod rig;

mod check;

mod drain;
mod engine;
mod failover;
mod pause;
mod ready;
mod traffic;
mod webhooks;
