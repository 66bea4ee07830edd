//! Proving the cluster secret, and logging refusals without flooding.
//!
//! A peer connection is authenticated by a challenge-response in both
//! directions (see `transport/tcp.rs` for the message order):
//!
//! 1. the connector sends its [`Hello`];
//! 2. the acceptor answers with a fresh random nonce `na`;
//! 3. the connector picks its own fresh nonce `nc` and sends
//!    `HMAC-SHA256(secret, "connector" | na | nc | hello)`;
//! 4. the acceptor checks it (constant time) and only then answers with
//!    `HMAC-SHA256(secret, "acceptor" | na | nc | hello | its name and
//!    generation)`, which the connector checks before sending anything.
//!
//! The secret itself never crosses the wire, each side's proof covers a
//! nonce the *other* side just chose (so a recorded proof is worthless),
//! and the role label keeps one side's proof from being replayed as the
//! other's. The acceptor proves itself only after the connector has, so an
//! unauthenticated client cannot use a node as a MAC oracle.
//!
//! A node without a secret runs the same exchange with an empty key, so a
//! node with a secret and one without can never talk: both refuse.
//!
//! [`RateLimit`] keeps refusal logs (peer handshakes, client AUTH
//! failures) to a few lines per window, counting what it held back.
//!
//! Deliberately left out: encrypting or authenticating the traffic after
//! the handshake (that is TLS's job); key rotation (restart with a new
//! secret everywhere).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::message::Hello;

/// Bytes in a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// A handshake nonce: fresh random bytes from the operating system.
pub type Nonce = [u8; NONCE_LEN];
/// An HMAC-SHA256 proof of the secret.
pub type Proof = [u8; 32];

/// Which side of the handshake computes a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that opened the connection.
    Connector,
    /// The side that accepted it.
    Acceptor,
}

/// What a proof covers: both nonces, the connector's hello and, for the
/// acceptor's proof, the acceptor's identity.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    /// The connector's hello.
    pub hello: &'a Hello,
    /// The acceptor's nonce.
    pub acceptor_nonce: &'a Nonce,
    /// The connector's nonce.
    pub connector_nonce: &'a Nonce,
    /// The acceptor's name and generation (bound into its proof only).
    pub acceptor: (&'a str, u64),
}

/// The cluster secret as an HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterKey {
    key: Vec<u8>,
    set: bool,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.set { "<secret>" } else { "<none>" };
        f.debug_struct("ClusterKey").field("key", &shown).finish()
    }
}

impl ClusterKey {
    /// The key for `secret`; `None` (or an empty secret) means no secret.
    pub fn new(secret: Option<&str>) -> Self {
        let key = secret.unwrap_or_default().as_bytes().to_vec();
        ClusterKey {
            set: !key.is_empty(),
            key,
        }
    }

    /// Whether a secret is configured.
    pub fn is_set(&self) -> bool {
        self.set
    }

    fn mac(&self, role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        let field = |mac: &mut Hmac<Sha256>, bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(&mut mac, b"ringkv peer handshake v2");
        field(
            &mut mac,
            match role {
                Role::Connector => b"connector",
                Role::Acceptor => b"acceptor",
            },
        );
        field(&mut mac, t.acceptor_nonce);
        field(&mut mac, t.connector_nonce);
        field(&mut mac, t.hello.name.as_bytes());
        field(&mut mac, t.hello.reply_to.as_bytes());
        mac.update(&t.hello.generation.to_be_bytes());
        mac.update(&t.hello.version.to_be_bytes());
        if role == Role::Acceptor {
            field(&mut mac, t.acceptor.0.as_bytes());
            mac.update(&t.acceptor.1.to_be_bytes());
        }
        mac
    }

    /// This side's proof over `t`.
    pub fn prove(&self, role: Role, t: &Transcript<'_>) -> Proof {
        self.mac(role, t).finalize().into_bytes().into()
    }

    /// Checks the other side's proof in constant time.
    pub fn verify(&self, role: Role, t: &Transcript<'_>, proof: &Proof) -> bool {
        self.mac(role, t).verify_slice(proof).is_ok()
    }

    /// Why a proof failed, for the log: which side lacks a secret, or that
    /// both have one and they differ. `theirs` is what the peer claimed.
    pub fn mismatch_reason(&self, theirs: bool) -> &'static str {
        match (self.set, theirs) {
            (true, false) => "peer has no cluster secret; this node requires one",
            (false, true) => "peer uses a cluster secret; this node has none",
            _ => "wrong cluster secret",
        }
    }
}

/// A fresh nonce from the operating system's random source.
pub fn nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// Compares a client's password with the configured one without leaking,
/// through timing, how much of it was right: the comparison is of SHA-256
/// digests, so an early mismatch says nothing about the password itself.
pub fn password_matches(given: &[u8], expected: &[u8]) -> bool {
    use sha2::Digest;
    Sha256::digest(given) == Sha256::digest(expected)
}

/// Allows at most `burst` events per `window`; the rest are counted.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    used: u32,
    held_back: u64,
}

impl RateLimit {
    /// At most `burst` per `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        RateLimit {
            burst,
            window,
            state: Mutex::new(Window {
                start: None,
                used: 0,
                held_back: 0,
            }),
        }
    }

    /// `Some(n)` if this event may be logged, `n` being how many were held
    /// back since the last one that was; `None` if it should be dropped.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.is_none_or(|s| now.duration_since(s) >= self.window) {
            w.start = Some(now);
            w.used = 0;
        }
        if w.used < self.burst {
            w.used += 1;
            Some(std::mem::take(&mut w.held_back))
        } else {
            w.held_back += 1;
            None
        }
    }
}

/// A [`RateLimit`] per key (a peer's name, say), so one noisy source cannot
/// use up the log lines another one's problem deserves. At most
/// `max_keys` keys get their own limit; the rest share one, so a flood of
/// invented names cannot grow the map without bound.
#[derive(Debug)]
pub struct KeyedRateLimit {
    burst: u32,
    window: Duration,
    max_keys: usize,
    per_key: Mutex<std::collections::HashMap<String, RateLimit>>,
    overflow: RateLimit,
}

impl KeyedRateLimit {
    /// At most `burst` per `window` for each of up to `max_keys` keys.
    pub fn new(burst: u32, window: Duration, max_keys: usize) -> Self {
        KeyedRateLimit {
            burst,
            window,
            max_keys,
            per_key: Mutex::default(),
            overflow: RateLimit::new(burst, window),
        }
    }

    /// [`RateLimit::check`] for `key`.
    pub fn check(&self, key: &str, now: Instant) -> Option<u64> {
        let mut map = self.per_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(limit) = map.get(key) {
            return limit.check(now);
        }
        if map.len() >= self.max_keys {
            return self.overflow.check(now);
        }
        let limit = RateLimit::new(self.burst, self.window);
        let verdict = limit.check(now);
        map.insert(key.to_string(), limit);
        verdict
    }
}

/// Client AUTH failures of this process: a few log lines every 10 s.
pub static CLIENT_AUTH_FAILURES: RateLimit = RateLimit::new(5, Duration::from_secs(10));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_limits_keep_one_source_from_silencing_another() {
        let limit = KeyedRateLimit::new(2, Duration::from_secs(10), 2);
        let now = Instant::now();
        assert!(limit.check("noisy", now).is_some());
        assert!(limit.check("noisy", now).is_some());
        assert!(limit.check("noisy", now).is_none());
        assert_eq!(
            limit.check("quiet", now),
            Some(0),
            "another key has its own budget"
        );
        assert!(
            limit.check("third", now).is_some(),
            "past max_keys: the shared limit"
        );
        assert!(limit.check("fourth", now).is_some());
        assert!(limit.check("fifth", now).is_none());
    }
    use crate::message::{MAGIC, PROTOCOL_VERSION};

    fn hello() -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name: "n1".into(),
            generation: 7,
            reply_to: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_role_and_nonces() {
        let h = hello();
        let (na, nc) = (nonce(), nonce());
        assert_ne!(na, nc, "nonces are fresh");
        let t = Transcript {
            hello: &h,
            acceptor_nonce: &na,
            connector_nonce: &nc,
            acceptor: ("n2", 3),
        };
        let k = ClusterKey::new(Some("s3cret"));
        let p = k.prove(Role::Connector, &t);
        assert!(k.verify(Role::Connector, &t, &p));
        assert!(!k.verify(Role::Acceptor, &t, &p), "no reflection");
        assert!(!ClusterKey::new(Some("other")).verify(Role::Connector, &t, &p));
        assert!(!ClusterKey::new(None).verify(Role::Connector, &t, &p));
        let other = nonce();
        let replay = Transcript {
            acceptor_nonce: &other,
            ..t
        };
        assert!(!k.verify(Role::Connector, &replay, &p), "no replay");
        assert!(!format!("{k:?}").contains("s3cret"));
    }

    #[test]
    fn rate_limit_allows_a_burst_then_counts() {
        let r = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.check(t0), Some(0));
        assert_eq!(r.check(t0), Some(0));
        assert_eq!(r.check(t0), None);
        assert_eq!(r.check(t0), None);
        assert_eq!(r.check(t0 + Duration::from_secs(11)), Some(2));
    }
}
