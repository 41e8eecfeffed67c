//! The commands beside `run`: `demo` (everything in one process), `tap` (live frames and outputs), and `start|stop|pause|resume`
//! (Zoom's REST flows through a running host).

pub mod demo;
pub mod tap;
pub mod zoom;
