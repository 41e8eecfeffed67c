//! rtms-host: Zoom RTMS media to sandboxed WebAssembly plugins.
