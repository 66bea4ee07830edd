//! Scenario scripts: replay a failure story against a real local cluster.
//!
//! - [`parse`]: the script language (after the 2014 chistributed broker
//!   scripts), with line-numbered errors.

pub mod parse;
