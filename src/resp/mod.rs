//! The client side: RESP2 on the client port.
//!
//! - [`codec`]: the wire format (commands in, replies out, limits checked
//!   before allocating).
//! - [`server`]: the accept loop and per-connection pipeline.
//! - [`commands`]: what each command does, on top of the coordinator.
//! - [`glob`]: Redis glob patterns for KEYS and SCAN.

pub mod codec;
pub mod commands;
pub mod glob;
pub mod ordered;
pub mod ringkv_cmd;
pub mod server;
