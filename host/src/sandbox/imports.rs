//! The host side of contract 0.2's imports: `host` (the same as 0.1's), `state`, `secrets`
//! and `budget`.
//!
//! Every failure is a value the guest sees (`result::err`), never a trap: a plugin over a
//! bound of its state or its units cap can go on. Refusals are counted through the
//! embedder (`Dropped::State`, `Dropped::Units`) and logged by count (1st, 10th, 100th,
//! ...). Secrets are handed to the guest and never written anywhere by the host: no call
//! here logs a value, a key or a `what` of the guest's.

use super::bindings::v01::rtms::plugin::host as host01;
use super::bindings::v02::rtms::plugin::host as host02;
use super::bindings::{Level, Output, budget, secrets, state};
use super::caps::ChargeError;
use super::state::{LIST_PAGE, Put, ScopeKey, StateError};
use super::store::{Dropped, StoreData};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl host02::Host for StoreData {
    fn log(&mut self, level: Level, message: String) {
        host01::Host::log(self, level, message)
    }

    fn emit(&mut self, out: Output) {
        host01::Host::emit(self, out)
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}

impl StoreData {
    fn scope(&self, scope: state::Scope) -> ScopeKey {
        match scope {
            state::Scope::Session => ScopeKey::session(&self.ctx.plugin, &self.ctx.stream_id),
            state::Scope::Plugin => ScopeKey::plugin(&self.ctx.plugin),
        }
    }

    /// The guest's view of a store error; a refused write is counted.
    fn state_error(&self, e: StateError) -> state::Error {
        match e {
            StateError::Full(m) => {
                self.ctx.refused(Dropped::State, &m);
                state::Error::Full(m)
            }
            StateError::InvalidKey(m) => state::Error::InvalidKey(m),
            StateError::NotANumber(m) => state::Error::NotANumber(m),
            StateError::Other(m) => state::Error::Other(m),
        }
    }

    fn put(value: Vec<u8>, ttl_ms: Option<u64>, now: u64) -> Put {
        Put {
            value,
            expires_at_ms: ttl_ms.map(|t| now.saturating_add(t)),
        }
    }
}

impl state::Host for StoreData {
    fn get(&mut self, scope: state::Scope, key: String) -> Result<Option<Vec<u8>>, state::Error> {
        let s = self.scope(scope);
        self.ctx
            .state
            .get(&s, &key, now_ms())
            .map_err(|e| self.state_error(e))
    }

    fn set(
        &mut self,
        scope: state::Scope,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), state::Error> {
        let (s, now) = (self.scope(scope), now_ms());
        let put = Self::put(value, ttl_ms, now);
        let r = self.ctx.state.set(&s, &key, put, &self.caps.state, now);
        r.map_err(|e| self.state_error(e))
    }

    fn delete(&mut self, scope: state::Scope, key: String) -> Result<(), state::Error> {
        let s = self.scope(scope);
        self.ctx
            .state
            .delete(&s, &key)
            .map_err(|e| self.state_error(e))
    }

    fn exists(&mut self, scope: state::Scope, key: String) -> Result<bool, state::Error> {
        self.get(scope, key).map(|v| v.is_some())
    }

    fn list_keys(
        &mut self,
        scope: state::Scope,
        cursor: Option<String>,
    ) -> Result<state::KeyResponse, state::Error> {
        let s = self.scope(scope);
        let (keys, more) = self
            .ctx
            .state
            .list_keys(&s, cursor.as_deref(), LIST_PAGE, now_ms())
            .map_err(|e| self.state_error(e))?;
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(state::KeyResponse { keys, cursor })
    }

    fn increment(
        &mut self,
        scope: state::Scope,
        key: String,
        delta: i64,
    ) -> Result<i64, state::Error> {
        let (s, now) = (self.scope(scope), now_ms());
        let r = self
            .ctx
            .state
            .increment(&s, &key, delta, &self.caps.state, now);
        r.map_err(|e| self.state_error(e))
    }

    fn compare_and_swap(
        &mut self,
        scope: state::Scope,
        key: String,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, state::Error> {
        let (s, now) = (self.scope(scope), now_ms());
        let put = Self::put(new, ttl_ms, now);
        let r =
            self.ctx
                .state
                .compare_and_swap(&s, &key, old.as_deref(), put, &self.caps.state, now);
        r.map_err(|e| self.state_error(e))
    }
}

impl secrets::Host for StoreData {
    fn get(&mut self, name: String) -> Option<String> {
        self.caps.secrets.get(&name).map(str::to_owned)
    }
}

impl budget::Host for StoreData {
    fn charge(&mut self, units: u64, what: String) -> Result<(), budget::BudgetError> {
        let cap = self.caps.units_per_session;
        match self.ctx.units.charge(units, &what, cap) {
            Ok(_) => {
                self.ctx.embedder.charged(&what, units);
                Ok(())
            }
            Err(ChargeError::OverCap { used, cap }) => {
                self.ctx.refused(
                    Dropped::Units,
                    &format!("a charge of {units} units would pass the session's cap ([plugin.limits] units_per_session = {cap}; {used} used)"),
                );
                Err(budget::BudgetError::OverCap(budget::OverCap { used, cap }))
            }
            Err(ChargeError::Invalid(m)) => Err(budget::BudgetError::Invalid(m)),
        }
    }

    fn used(&mut self) -> (u64, Option<u64>) {
        (self.ctx.units.used(), self.caps.units_per_session)
    }
}

impl crate::sandbox::bindings::v03::rtms::plugin0_3_0::video::Host for StoreData {
    fn request(
        &mut self,
        user_id: i64,
        action: crate::sandbox::bindings::v03::rtms::plugin0_3_0::video::Action,
    ) -> Result<(), String> {
        use crate::sandbox::bindings::v03::rtms::plugin0_3_0::video::Action;
        use crate::sandbox::store::VideoAction;
        let action = match action {
            Action::Pin => VideoAction::Pin,
            Action::Drop => VideoAction::Drop,
            Action::Release => VideoAction::Release,
        };
        self.ctx.embedder.video(&self.ctx, user_id, action)
    }
}

impl crate::sandbox::bindings::v03::rtms::plugin0_3_0::events::Host for StoreData {
    fn decode(
        &mut self,
        event_type: u32,
        json: String,
    ) -> Result<Option<crate::sandbox::bindings::v03::rtms::plugin0_3_0::events::Event>, String>
    {
        rtms_proto::events::decode(event_type, &json)
            .map(|e| e.map(crate::sandbox::bindings::event_v03))
            .map_err(|e| e.to_string())
    }
}
