//! The version negotiation over real loopback sockets: this build's
//! transports against each other at different settings, and against fakes
//! of a released version 5 node (commit 57b5f3f) on either side.
//!
//! The fakes are built from the same frame helpers and proofs as the real
//! handshake, with the one thing version 5 differs in written out: its
//! `HelloReply` had three variants ([`LegacyReply`]), so anything else the
//! new code sent it would fail to decode, here as there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

use super::handshake::{recv_frame, send_frame};
use super::tcp::{TcpConfig, TcpTransport};
use super::{Peer, PeerHandler, Transport, Versions};
use crate::auth::{ClusterKey, Nonce, Proof, Role, Transcript};
use crate::encoding::FrameCodec;
use crate::message::{Hello, HelloProof, HelloReply, PeerMsg, MAGIC};

const SECRET: &str = "s3cret";
const WAIT: Duration = Duration::from_secs(10);

/// `HelloReply` as version 5 declared it.
#[derive(Debug, Serialize, Deserialize)]
enum LegacyReply {
    Accept {
        name: String,
        generation: u64,
        proof: Proof,
    },
    Reject {
        reason: String,
    },
    Challenge {
        nonce: Nonce,
        secured: bool,
    },
}

impl crate::encoding::Wire for LegacyReply {
    const FIXED_INTS: bool = false;
}

fn key() -> ClusterKey {
    ClusterKey::new(Some(SECRET))
}

fn versions(min: u32, max: u32) -> Versions {
    Versions { min, max }
}

/// Hands every message to the test, with who sent it.
struct Recorder(mpsc::UnboundedSender<(Peer, PeerMsg)>);

impl PeerHandler for Recorder {
    fn on_message(&self, from: &Peer, msg: PeerMsg) {
        self.0
            .send((from.clone(), msg))
            .expect("the test is still listening");
    }
}

/// A transport of this build speaking `versions`, stopped when dropped.
struct Node {
    net: TcpTransport,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn node(name: &str, versions: Versions) -> Node {
    let stop = CancellationToken::new();
    let cfg = TcpConfig {
        hello: Hello {
            magic: MAGIC,
            version: versions.max,
            name: name.into(),
            generation: 1,
            reply_to: format!("{name}.invalid:1"),
        },
        versions,
        key: key(),
        max_frame: 1 << 20,
        queue_len: 64,
        idle_timeout: WAIT,
        write_timeout: WAIT,
        clock: None,
        tls: None,
    };
    let net = TcpTransport::new(cfg, None, stop.clone());
    Node { net, stop }
}

/// A transport of this build accepting on a fresh port: the node, its
/// address, and what it receives.
async fn acceptor(versions: Versions) -> (Node, String, mpsc::UnboundedReceiver<(Peer, PeerMsg)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let n = node("acceptor", versions);
    tokio::spawn(n.net.clone().serve(listener, Arc::new(Recorder(tx))));
    (n, addr, rx)
}

/// Sends one message from `from` to `addr` over its link and returns it
/// as received, with the sender as the acceptor saw it.
async fn deliver<T>(from: &Node, addr: &str, rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    assert!(from.net.send(addr, PeerMsg::TransferAck { id: 7 }));
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("delivered in time")
        .expect("receiver open")
}

/// Relays connections to `target`, keeping what `target` sends back.
async fn tap(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(&target).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            // Ends when either side closes; nothing to report.
            let _closed = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = server_read.read(&mut chunk).await {
            record.lock().unwrap().extend_from_slice(&chunk[..n]);
            if client_write.write_all(&chunk[..n]).await.is_err() {
                return;
            }
        }
    });
    (addr, seen)
}

/// The first frame the tapped acceptor sent, read as `T`.
fn first_reply<T: serde::de::DeserializeOwned + crate::encoding::Wire>(seen: &Mutex<Vec<u8>>) -> T {
    let mut bytes = BytesMut::from(&seen.lock().unwrap()[..]);
    FrameCodec::<T>::new(1 << 16)
        .decode(&mut bytes)
        .expect("a well-formed frame")
        .expect("a whole frame")
}

#[tokio::test]
async fn new_nodes_negotiate_the_newest_version() {
    let (_acceptor, target, mut rx) = acceptor(versions(5, 6)).await;
    let (addr, seen) = tap(target).await;
    let connector = node("connector", versions(5, 6));
    assert_eq!(connector.net.peer_version(&addr), None, "no link yet");
    let (peer, msg) = deliver(&connector, &addr, &mut rx).await;
    assert_eq!(msg, PeerMsg::TransferAck { id: 7 });
    assert_eq!((peer.name.as_ref(), peer.version), ("connector", 6));
    assert_eq!(connector.net.peer_version(&addr), Some(6));
    assert!(matches!(
        first_reply::<HelloReply>(&seen),
        HelloReply::Negotiated { version: 6, .. }
    ));
}

#[tokio::test]
async fn a_node_capped_at_5_links_at_5_and_is_sent_the_legacy_challenge() {
    let (_acceptor, target, mut rx) = acceptor(versions(5, 6)).await;
    let (addr, seen) = tap(target).await;
    let capped = node("capped", versions(5, 5));
    let (peer, _) = deliver(&capped, &addr, &mut rx).await;
    assert_eq!(peer.version, 5);
    assert_eq!(capped.net.peer_version(&addr), Some(5));
    // What a version 5 node decodes: variant 2, the old shape.
    assert!(matches!(
        first_reply::<LegacyReply>(&seen),
        LegacyReply::Challenge { secured: true, .. }
    ));
}

#[tokio::test]
async fn an_acceptor_capped_at_5_links_a_new_connector_at_5() {
    let (_acceptor, addr, mut rx) = acceptor(versions(5, 5)).await;
    let connector = node("connector", versions(5, 6));
    let (peer, _) = deliver(&connector, &addr, &mut rx).await;
    assert_eq!(peer.version, 5);
    assert_eq!(connector.net.peer_version(&addr), Some(5));
}

/// A released version 5 acceptor: refuses any other version with its
/// words before anything else, else runs the old handshake, then hands on
/// (the version offered, each message).
async fn legacy_acceptor() -> (String, mpsc::UnboundedReceiver<(u32, PeerMsg)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(legacy_connection(stream, tx.clone()));
        }
    });
    (addr, rx)
}

async fn legacy_connection(mut s: TcpStream, tx: mpsc::UnboundedSender<(u32, PeerMsg)>) {
    let mut buf = BytesMut::new();
    let hello: Hello = recv_frame(&mut s, &mut buf).await.unwrap().unwrap();
    if hello.version != 5 {
        let reason = format!(
            "protocol version {} not supported (this node speaks 5)",
            hello.version
        );
        send_frame(&mut s, &LegacyReply::Reject { reason })
            .await
            .unwrap();
        return;
    }
    let nonce = crate::auth::nonce();
    let challenge = LegacyReply::Challenge {
        nonce,
        secured: true,
    };
    send_frame(&mut s, &challenge).await.unwrap();
    let answer: HelloProof = recv_frame(&mut s, &mut buf).await.unwrap().unwrap();
    let t = Transcript {
        hello: &hello,
        acceptor_nonce: &nonce,
        connector_nonce: &answer.nonce,
        acceptor: ("old", 1),
    };
    assert!(key().verify(Role::Connector, &t, &answer.proof));
    let accept = LegacyReply::Accept {
        name: "old".into(),
        generation: 1,
        proof: key().prove(Role::Acceptor, &t),
    };
    send_frame(&mut s, &accept).await.unwrap();
    let mut frames = FramedRead::new(s, FrameCodec::<PeerMsg>::new(1 << 20));
    frames.read_buffer_mut().extend_from_slice(&buf);
    while let Some(Ok(msg)) = frames.next().await {
        if tx.send((hello.version, msg)).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_new_connector_retries_a_released_acceptor_at_5() {
    let (addr, mut rx) = legacy_acceptor().await;
    let connector = node("connector", versions(5, 6));
    let (offered, msg) = deliver(&connector, &addr, &mut rx).await;
    assert_eq!((offered, msg), (5, PeerMsg::TransferAck { id: 7 }));
    assert_eq!(connector.net.peer_version(&addr), Some(5));
    let refused = connector
        .net
        .stats()
        .refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 0, "a refusal the retry got past is no refusal");
}

#[tokio::test]
async fn a_released_connector_is_accepted_at_5() {
    let (_acceptor, addr, mut rx) = acceptor(versions(5, 6)).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let hello = Hello {
        magic: MAGIC,
        version: 5,
        name: "old".into(),
        generation: 1,
        reply_to: "old.invalid:1".into(),
    };
    send_frame(&mut s, &hello).await.unwrap();
    let mut buf = BytesMut::new();
    let Some(LegacyReply::Challenge { nonce, secured }) =
        recv_frame(&mut s, &mut buf).await.unwrap()
    else {
        panic!("a version 5 connector is challenged as it was");
    };
    assert!(secured);
    let connector_nonce = crate::auth::nonce();
    let mut t = Transcript {
        hello: &hello,
        acceptor_nonce: &nonce,
        connector_nonce: &connector_nonce,
        acceptor: ("", 0),
    };
    let answer = HelloProof {
        nonce: connector_nonce,
        secured: true,
        proof: key().prove(Role::Connector, &t),
    };
    send_frame(&mut s, &answer).await.unwrap();
    let Some(LegacyReply::Accept {
        name,
        generation,
        proof,
    }) = recv_frame(&mut s, &mut buf).await.unwrap()
    else {
        panic!("accepted");
    };
    t.acceptor = (&name, generation);
    assert!(key().verify(Role::Acceptor, &t, &proof));
    let mut frame = BytesMut::new();
    FrameCodec::<PeerMsg>::new(1 << 20)
        .encode(PeerMsg::TransferAck { id: 9 }, &mut frame)
        .unwrap();
    s.write_all(&frame).await.unwrap();
    let (peer, msg) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg, PeerMsg::TransferAck { id: 9 });
    assert_eq!((peer.name.as_ref(), peer.version), ("old", 5));
}

fn refusals(n: &Node) -> u64 {
    n.net
        .stats()
        .refused
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn disjoint_ranges_refuse_with_a_readable_reason_on_either_side() {
    // The connector is too old for the acceptor: the acceptor refuses.
    let (newer, addr, _rx) = acceptor(versions(6, 7)).await;
    let older = node("older", versions(5, 5));
    let err = older.net.connect_once(&addr).await.unwrap_err().to_string();
    assert!(
        err.ends_with(
            "refused the handshake: protocol version 5 not supported \
             (this node speaks 6 to 7; the peer offered at most 5)"
        ),
        "{err}"
    );
    assert_eq!(refusals(&older), 1);
    assert!(refusals(&newer) >= 1);

    // The acceptor is too old for the connector: the connector gives up.
    let (_older, addr, _rx) = acceptor(versions(5, 5)).await;
    let newer = node("newer", versions(6, 7));
    let err = newer.net.connect_once(&addr).await.unwrap_err().to_string();
    assert!(
        err.ends_with("peer speaks protocol version 5 at most; this node speaks 6 to 7"),
        "{err}"
    );
    assert_eq!(refusals(&newer), 1);

    // Nor does a released node's refusal get retried below our range.
    let (addr, _rx) = legacy_acceptor().await;
    let err = newer.net.connect_once(&addr).await.unwrap_err().to_string();
    assert!(
        err.ends_with("protocol version 7 not supported (this node speaks 5)"),
        "{err}"
    );
    assert_eq!(refusals(&newer), 2);
}
