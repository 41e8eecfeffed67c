//! What an operator watches and does: the admin listener and its routes (health, readiness,
//! the JSON admin API, the dashboard, the tap), and the Prometheus exposition.

pub mod admin;
pub mod exposition;
