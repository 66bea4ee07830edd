//! The client side: RESP2 and RESP3 on the client port.
//!
//! - [`codec`]: the wire format (commands in, replies out in either
//!   protocol, limits checked before allocating).
//! - [`server`]: the accept loop and the per-connection pipeline.
//! - [`conn`]: one connection's state, and the registry of connections.
//! - [`cmd`]: the command table and what each command does, on top of the
//!   coordinator.
//! - [`order`]: when a pipelined command starts (at once, or after the
//!   ones before it), and [`ordered`], the queue that answers in order.
//! - [`glob`]: Redis glob patterns for KEYS and SCAN.

pub mod cmd;
pub mod codec;
pub mod conn;
pub mod glob;
pub mod order;
pub mod ordered;
pub mod server;
