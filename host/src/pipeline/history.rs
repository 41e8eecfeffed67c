//! The reload history the admin API shows: the last reload's outcome, and the pipeline in
//! force after it (printed with every secret as `***`).

use rtms_config::Pipeline;
use serde_json::Value;

/// The last reload and the pipeline in force, for the admin API.
#[derive(Default)]
pub struct ReloadLog {
    last: parking_lot::Mutex<serde_json::Value>,
    config: parking_lot::Mutex<String>,
}

impl ReloadLog {
    /// Records a reload's outcome and the pipeline in force after it.
    /// `outcome` is the reload's answer ([`super::reload::outcome_json`]).
    pub fn record(&self, trigger: &str, outcome: Value, current: &Pipeline) {
        let mut v = outcome;
        if let Some(o) = v.as_object_mut() {
            o.remove("reload");
            o.remove("joined");
            o.insert("trigger".into(), trigger.into());
            o.insert("time_ms".into(), rtms_proto::unix_ms().into());
        }
        *self.last.lock() = v;
        self.set_config(current);
    }

    pub fn set_config(&self, p: &Pipeline) {
        // The model's Debug prints every secret as `***`.
        *self.config.lock() = format!("{p:#?}\n");
    }

    pub fn last(&self) -> serde_json::Value {
        self.last.lock().clone()
    }

    pub fn config(&self) -> String {
        self.config.lock().clone()
    }
}
