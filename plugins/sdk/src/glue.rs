//! The code behind [`export_plugin!`](crate::export_plugin): keeps the one [`Plugin`] value of an
//! instance in a thread-local slot and forwards each `handler` call to it.
//!
//! Public only so the macro can reach it from plugin crates; not part of the API.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::{Config, Plugin};

/// The error a call gets when `init` has not succeeded on this instance.
pub const NOT_INITIALIZED: &str =
    "the plugin is not initialized: the host must call init successfully before anything else";

/// The error a call gets if the host re-enters the instance (which the contract rules out).
pub const BUSY: &str =
    "the plugin is already handling a call: calls into one instance must not overlap";

/// Where the instance's plugin value lives. Wasm instances are single-threaded, so a
/// thread-local `RefCell` is the whole of the synchronisation.
pub struct Slot<P>(RefCell<Option<P>>);

impl<P> Slot<P> {
    /// An empty slot, filled by a successful `init`.
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }
}

impl<P> Default for Slot<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs [`Plugin::init`] and stores the result. A failed init leaves the slot empty.
pub fn init<P: Plugin>(
    slot: &'static LocalKey<Slot<P>>,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    let plugin = P::init(Config::new(config))?;
    slot.with(|s| match s.0.try_borrow_mut() {
        Ok(mut cell) => {
            *cell = Some(plugin);
            Ok(())
        }
        Err(_) => Err(BUSY.to_owned()),
    })
}

/// Runs `f` on the stored plugin, or fails when `init` has not succeeded.
pub fn with<P: Plugin>(
    slot: &'static LocalKey<Slot<P>>,
    f: impl FnOnce(&mut P) -> Result<(), String>,
) -> Result<(), String> {
    slot.with(|s| match s.0.try_borrow_mut() {
        Ok(mut cell) => match cell.as_mut() {
            Some(plugin) => f(plugin),
            None => Err(NOT_INITIALIZED.to_owned()),
        },
        Err(_) => Err(BUSY.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndReason, Frame, SessionInfo};

    struct Counter {
        calls: u32,
        refuse: bool,
    }

    impl Plugin for Counter {
        fn init(config: Config) -> Result<Self, String> {
            Ok(Self {
                calls: 0,
                refuse: config.bool_or("refuse", false)?,
            })
        }
        fn on_session_start(&mut self, _info: SessionInfo) -> Result<(), String> {
            Ok(())
        }
        fn on_frames(&mut self, _session: u64, _frames: Vec<Frame>) -> Result<(), String> {
            self.calls += 1;
            if self.refuse {
                Err("refused".into())
            } else {
                Ok(())
            }
        }
        fn on_session_end(&mut self, _session: u64, _reason: EndReason) -> Result<(), String> {
            Ok(())
        }
    }

    thread_local! {
        static SLOT: Slot<Counter> = const { Slot::new() };
    }

    #[test]
    fn calls_before_init_fail_and_after_init_reach_the_plugin() {
        let err = with(&SLOT, |p: &mut Counter| p.on_frames(1, Vec::new())).unwrap_err();
        assert_eq!(err, NOT_INITIALIZED);

        let bad = init(&SLOT, vec![("refuse".into(), "maybe".into())]).unwrap_err();
        assert!(bad.contains("refuse"), "{bad}");
        assert!(with(&SLOT, |p: &mut Counter| p.on_frames(1, Vec::new())).is_err());

        init(&SLOT, vec![("refuse".into(), "true".into())]).unwrap();
        let err = with(&SLOT, |p: &mut Counter| p.on_frames(1, Vec::new())).unwrap_err();
        assert_eq!(err, "refused");
        SLOT.with(|s| assert_eq!(s.0.borrow().as_ref().map(|p| p.calls), Some(1)));
    }
}
