//! Table tests of the quorum machines: each row a sequence of views,
//! answers and instants, and what the machine must say at each step.

use std::time::{Duration, Instant};

use super::{Quorum, Replicas, Targets};
use crate::ring::{NodeList, NodeName};

mod props;
mod read;
mod write;

/// Node `name`, as a fresh allocation (the machines compare names by
/// value, not only by pointer).
fn n(name: &str) -> NodeName {
    NodeName::from(name)
}

fn list(names: &[&str]) -> NodeList {
    names.iter().map(|x| n(x)).collect()
}

/// Sloppy replicas: the list is the whole of it.
fn sloppy(names: &[&str]) -> Replicas {
    Replicas {
        list: list(names),
        home: names.len(),
    }
}

/// Strict replicas: `up` of the `home` home replicas.
fn strict(up: &[&str], home: usize) -> Replicas {
    Replicas {
        list: list(up),
        home,
    }
}

fn targets(local: bool, remote: &[&str]) -> Targets {
    Targets {
        local,
        remote: list(remote),
    }
}

fn q(r: usize, w: usize, strict: bool) -> Quorum {
    Quorum { r, w, strict }
}

/// An instant `ms` milliseconds after the test's origin.
fn at(origin: Instant, ms: u64) -> Instant {
    origin + Duration::from_millis(ms)
}
