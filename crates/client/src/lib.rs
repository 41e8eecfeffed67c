//! The RTMS client.
