//! `plugins/chain-auth` through the real server, with tokens signed by independent wallet
//! libraries (`@polkadot/keyring` for sr25519 and ed25519, `ethers` for EIP-191) and on-chain
//! roles read from a real EVM node (ganache) running the test contracts:
//!
//! - signed tokens publish and play over real WHIP/WHEP sessions, wrapped (`<Bytes>`) or not;
//! - tampered, stale, future, replayed, wrong-room, wrong-scheme, malformed and missing tokens
//!   are 401; a wallet without the role is 403; each with its reason;
//! - owner and co-host from the contract, a ticket-gated room, a live session ending when
//!   ownership moves on chain (continuous authorization), an unreachable chain failing closed;
//! - roles from a JSON oracle.

mod support;

use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::chain::{self, Ganache, Scheme, SignOptions, SignedToken};
use support::component;
use switchboard::client::{ClientOptions, Publisher, Viewer};
use switchboard::config::Config;
use switchboard::server::Server;

const T: Duration = Duration::from_secs(15);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A server with the chain-auth plugin configured by `config` (the `[plugins.config]` body)
/// and `extra` (upstreams).
async fn start(config: &str, extra: &str) -> (Server, String) {
    let toml = format!(
        "[http]\nbind = \"127.0.0.1:0\"\n[webrtc]\nbind_ips = [\"127.0.0.1\"]\nconnect_timeout_secs = 10\n\
         [limits]\nrequests_per_sec_per_ip = 1000\nrequest_burst_per_ip = 1000\n\
         {extra}\
         [[plugins]]\nname = \"wallets\"\npath = \"{}\"\nhooks = [\"auth\"]\n{}\
         [plugins.config]\n{config}\n",
        component("chain-auth").display(),
        grants(extra)
    );
    let config = Config::from_toml_str(&toml).expect("valid test config");
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());
    (server, base)
}

fn grants(extra: &str) -> String {
    let http = if extra.contains("[upstreams.chain]") {
        "http = [\"chain\"]\n"
    } else if extra.contains("[upstreams.roles]") {
        "http = [\"roles\"]\n"
    } else {
        ""
    };
    format!("[plugins.grants]\nkv = true\n{http}")
}

fn sign(scheme: Scheme, seed: &str, room: &str, opts: SignOptions) -> SignedToken {
    chain::sign_token(scheme, seed, room, &opts)
}

/// Sign off the async runtime (the signer is a Node.js process).
async fn sign_async(
    scheme: Scheme,
    seed: &'static str,
    room: &'static str,
    opts: SignOptions,
) -> SignedToken {
    tokio::task::spawn_blocking(move || sign(scheme, seed, room, opts))
        .await
        .unwrap()
}

fn with_token(token: &str) -> ClientOptions {
    ClientOptions {
        token: Some(token.into()),
        ..ClientOptions::default()
    }
}

/// Status and body of a WHIP (`publish`) or WHEP (`play`) POST with a minimal offer: the
/// plugin decides before any WebRTC work, so an admitted request then fails the offer (400).
async fn post(base: &str, action: &str, room: &str, token: Option<&str>) -> (u16, String) {
    let kind = if action == "publish" { "whip" } else { "whep" };
    support::post_status(base, &format!("/{kind}/{room}"), token).await
}

/// Admitted by the plugin: past auth, stopped by the minimal offer.
fn admitted((status, body): &(u16, String)) -> bool {
    *status == 400 && !body.contains("denied")
}

fn refused(got: &(u16, String), status: u16, reason: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert!(got.1.contains(reason), "reason `{reason}` not in {got:?}");
}

const ALICE: &str = "//Alice";
const BOB: &str = "//Bob";
const CHARLIE: &str = "//Charlie";
const DAVE: &str = "//Dave";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_tokens_publish_and_play_and_bad_ones_are_refused_with_reasons() {
    let alice = sign(Scheme::Sr25519, ALICE, "studio", SignOptions::default());
    let evm_owner = chain::ACCOUNTS[0];
    let (server, base) = start(
        &format!(
            "[[plugins.config.rooms]]\nroom = \"studio\"\nowners = [\"{}\"]\nviewers = \"open\"\n\
             [[plugins.config.rooms]]\nroom = \"evm-*\"\nowners = [\"{}\"]\n\
             [[plugins.config.rooms]]\nroom = \"club\"\nviewers = \"listed\"\nviewer_list = [\"{}\"]\n",
            alice.address,
            evm_owner.address.to_lowercase(),
            sign(Scheme::Ed25519, BOB, "x", SignOptions::default()).address,
        ),
        "",
    )
    .await;

    // sr25519 (Polkadot.js) publishes; ed25519 plays; EIP-191 (ethers) publishes in its room;
    // an extension-wrapped sr25519 signature plays.
    let publisher = Publisher::connect(&base, "studio", &with_token(&alice.token))
        .await
        .expect("the room's owner publishes");
    publisher.wait_connected(T).await.unwrap();
    let bob = sign_async(Scheme::Ed25519, BOB, "studio", SignOptions::default()).await;
    let viewer = Viewer::connect(&base, "studio", &with_token(&bob.token))
        .await
        .expect("a signed viewer plays");
    viewer.wait_connected(T).await.unwrap();
    let evm = sign_async(
        Scheme::Eip191,
        evm_owner.private_key,
        "evm-1",
        SignOptions::default(),
    )
    .await;
    let evm_publisher = Publisher::connect(&base, "evm-1", &with_token(&evm.token))
        .await
        .expect("an Ethereum wallet publishes");
    evm_publisher.wait_connected(T).await.unwrap();
    let wrapped = sign_async(
        Scheme::Sr25519,
        CHARLIE,
        "studio",
        SignOptions {
            wrap: true,
            ..SignOptions::default()
        },
    )
    .await;
    let wrapped_viewer = Viewer::connect(&base, "studio", &with_token(&wrapped.token))
        .await
        .expect("a <Bytes>-wrapped signature plays");
    wrapped_viewer.wait_connected(T).await.unwrap();

    // Subjects are the addresses; attributes carry the role and scheme.
    let sessions = server.sfu().sessions_in("studio");
    let subjects: Vec<String> = sessions
        .iter()
        .map(|s| s.identity.subject.clone())
        .collect();
    assert!(subjects.contains(&alice.address), "{subjects:?}");
    assert!(subjects.contains(&bob.address), "{subjects:?}");
    let owner = sessions
        .iter()
        .find(|s| s.identity.subject == alice.address)
        .unwrap();
    let attribute = |name: &str| {
        owner
            .identity
            .attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attribute("role").as_deref(), Some("owner"));
    assert_eq!(attribute("scheme").as_deref(), Some("sr25519"));

    // The same EIP-191 signature with `v` written as 0/1 instead of 27/28 is the same
    // signature: replayed.
    let mut claims = chain::decode_token(&evm.token);
    let sig = claims["sig"].as_str().unwrap().to_owned();
    let v = u8::from_str_radix(&sig[sig.len() - 2..], 16).unwrap();
    claims["sig"] = json!(format!("{}{:02x}", &sig[..sig.len() - 2], v - 27));
    refused(
        &post(
            &base,
            "publish",
            "evm-1",
            Some(&chain::encode_token(&claims)),
        )
        .await,
        401,
        "replayed",
    );

    // The same token again: one signature, one session.
    refused(
        &post(&base, "play", "studio", Some(&bob.token)).await,
        401,
        "replayed",
    );

    // Tampered signature, stale and future timestamps, another room's token, a scheme that
    // does not match the signature, garbage and nothing at all.
    let mut claims = chain::decode_token(
        &sign_async(Scheme::Sr25519, CHARLIE, "studio", SignOptions::default())
            .await
            .token,
    );
    let sig = claims["sig"].as_str().unwrap().to_owned();
    let flipped = if sig.ends_with('0') { "1" } else { "0" };
    claims["sig"] = json!(format!("{}{flipped}", &sig[..sig.len() - 1]));
    refused(
        &post(&base, "play", "studio", Some(&chain::encode_token(&claims))).await,
        401,
        "bad signature",
    );
    let at = |ts_ms: u64| SignOptions {
        ts_ms: Some(ts_ms),
        ..SignOptions::default()
    };
    let stale = sign_async(
        Scheme::Sr25519,
        CHARLIE,
        "studio",
        at(now_ms() - 10 * 60_000),
    )
    .await;
    refused(
        &post(&base, "play", "studio", Some(&stale.token)).await,
        401,
        "stale timestamp",
    );
    let future = sign_async(
        Scheme::Sr25519,
        CHARLIE,
        "studio",
        at(now_ms() + 10 * 60_000),
    )
    .await;
    refused(
        &post(&base, "play", "studio", Some(&future.token)).await,
        401,
        "future",
    );
    let other_room = sign_async(
        Scheme::Sr25519,
        CHARLIE,
        "elsewhere",
        SignOptions::default(),
    )
    .await;
    refused(
        &post(&base, "play", "studio", Some(&other_room.token)).await,
        401,
        "bad signature",
    );
    let mut claims = chain::decode_token(
        &sign_async(Scheme::Sr25519, CHARLIE, "studio", SignOptions::default())
            .await
            .token,
    );
    claims["scheme"] = json!("ed25519");
    refused(
        &post(&base, "play", "studio", Some(&chain::encode_token(&claims))).await,
        401,
        "bad signature",
    );
    claims["scheme"] = json!("rsa");
    refused(
        &post(&base, "play", "studio", Some(&chain::encode_token(&claims))).await,
        401,
        "unknown scheme",
    );
    refused(
        &post(&base, "play", "studio", Some("not-a-token")).await,
        401,
        "malformed token",
    );
    refused(
        &post(&base, "play", "studio", None).await,
        401,
        "missing wallet token",
    );

    // Verified wallets without the role: 403.
    let dave = sign_async(Scheme::Sr25519, DAVE, "studio", SignOptions::default()).await;
    refused(
        &post(&base, "publish", "studio", Some(&dave.token)).await,
        403,
        "not the owner or a co-host",
    );
    let dave_club = sign_async(Scheme::Sr25519, DAVE, "club", SignOptions::default()).await;
    refused(
        &post(&base, "play", "club", Some(&dave_club.token)).await,
        403,
        "not allowed to view",
    );
    let bob_club = sign_async(Scheme::Ed25519, BOB, "club", SignOptions::default()).await;
    assert!(admitted(
        &post(&base, "play", "club", Some(&bob_club.token)).await
    ));

    wrapped_viewer.close().await;
    viewer.close().await;
    evm_publisher.close().await;
    publisher.close().await;
    server.shutdown().await;
}

/// `ganache` with the test contracts, and the plugin reading roles from them.
fn evm_config(contracts: &chain::Contracts, extra_rooms: &str) -> String {
    format!(
        "cache_secs = 0\nrecheck_every_secs = 1\n{extra_rooms}\
         [plugins.config.evm]\nupstream = \"chain\"\ncontract = \"{}\"\n\
         owner_of = \"ownerOf(string)\"\nis_cohost = \"isCoHost(string,address)\"\n\
         [plugins.config.evm.ticket]\ncontract = \"{}\"\nbalance_of = \"balanceOf(address)\"\n",
        contracts.rooms, contracts.ticket
    )
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_the_chain_and_a_transfer_ends_the_live_session() {
    let node = tokio::task::spawn_blocking(Ganache::start).await.unwrap();
    let contracts = node.deploy();
    let [owner, cohost, fan, buyer] = [1, 2, 3, 4].map(|i| chain::ACCOUNTS[i]);
    node.send(
        &contracts.rooms,
        "setOwner(string,address)",
        json!(["stage", owner.address]),
    );
    let (server, base) = start(
        &evm_config(
            &contracts,
            "[[plugins.config.rooms]]\nroom = \"vip\"\nviewers = \"ticket\"\n\
             [[plugins.config.rooms]]\nroom = \"club\"\nviewers = \"listed\"\n",
        ),
        &format!("[upstreams.chain]\nurl = \"{}\"\n", node.rpc_url()),
    )
    .await;
    let token = |who: chain::Account, room: &'static str| {
        let key = who.private_key;
        async move {
            sign_async(Scheme::Eip191, key, room, SignOptions::default())
                .await
                .token
        }
    };

    // The owner on chain publishes; a stranger may not; a co-host once the contract says so.
    let live = Publisher::connect(&base, "stage", &with_token(&token(owner, "stage").await))
        .await
        .expect("the on-chain owner publishes");
    live.wait_connected(T).await.unwrap();
    refused(
        &post(
            &base,
            "publish",
            "stage",
            Some(&token(cohost, "stage").await),
        )
        .await,
        403,
        "not the owner or a co-host",
    );
    node.send(
        &contracts.rooms,
        "setCoHost(string,address,bool)",
        json!(["stage", cohost.address, true]),
    );
    let got = post(
        &base,
        "publish",
        "stage",
        Some(&token(cohost, "stage").await),
    )
    .await;
    assert!(
        got.0 != 401 && got.0 != 403,
        "a co-host passes auth: {got:?}"
    );

    // A room name longer than one ABI word, and an on-chain owner viewing a listed room.
    const LONG: &str = "a-room-name-longer-than-thirty-two-bytes-for-abi";
    node.send(
        &contracts.rooms,
        "setOwner(string,address)",
        json!([LONG, fan.address]),
    );
    assert!(admitted(
        &post(&base, "publish", LONG, Some(&token(fan, LONG).await)).await
    ));
    node.send(
        &contracts.rooms,
        "setOwner(string,address)",
        json!(["club", owner.address]),
    );
    assert!(admitted(
        &post(&base, "play", "club", Some(&token(owner, "club").await)).await
    ));
    refused(
        &post(&base, "play", "club", Some(&token(fan, "club").await)).await,
        403,
        "not allowed to view",
    );

    // A ticket-gated room: no ticket, no entry; minted, in.
    refused(
        &post(&base, "play", "vip", Some(&token(fan, "vip").await)).await,
        403,
        "no ticket",
    );
    node.send(&contracts.ticket, "mint(address)", json!([fan.address]));
    assert!(admitted(
        &post(&base, "play", "vip", Some(&token(fan, "vip").await)).await
    ));

    // Continuous authorization: ownership moves on chain, the live session ends.
    assert_eq!(server.sfu().counts("stage").publishers, 1);
    node.send(
        &contracts.rooms,
        "setOwner(string,address)",
        json!(["stage", buyer.address]),
    );
    wait_until(
        "the old owner's session ends",
        Duration::from_secs(10),
        || server.sfu().counts("stage").publishers == 0,
    )
    .await;
    let new_owner = Publisher::connect(&base, "stage", &with_token(&token(buyer, "stage").await))
        .await
        .expect("the new owner publishes");
    new_owner.wait_connected(T).await.unwrap();
    // Re-checks of the new owner's session pass (its signature is not "replayed").
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.sfu().counts("stage").publishers,
        1,
        "re-checks keep the owner"
    );

    // The node stops: new requests fail closed; the live session's re-checks cannot run,
    // so it stays for the host's grace period (`auth.recheck_grace_secs`, 60 s) instead of
    // ending at the first blip.
    drop(node);
    refused(
        &post(
            &base,
            "publish",
            "other",
            Some(&token(owner, "other").await),
        )
        .await,
        403,
        "chain unreachable",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.sfu().counts("stage").publishers,
        1,
        "an unreachable chain does not end a live session at once"
    );

    new_owner.close().await;
    live.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_chain_fails_closed() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let contracts = chain::Contracts {
        rooms: "0x1111111111111111111111111111111111111111".into(),
        ticket: "0x2222222222222222222222222222222222222222".into(),
    };
    let (server, base) = start(
        &evm_config(&contracts, ""),
        &format!("[upstreams.chain]\nurl = \"http://127.0.0.1:{port}\"\n"),
    )
    .await;
    let token = sign_async(
        Scheme::Eip191,
        chain::ACCOUNTS[1].private_key,
        "stage",
        SignOptions::default(),
    )
    .await;
    refused(
        &post(&base, "publish", "stage", Some(&token.token)).await,
        403,
        "chain unreachable",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_a_json_oracle() {
    let owner = sign(Scheme::Sr25519, ALICE, "stage", SignOptions::default());
    let owner_address = owner.address.clone();
    // The oracle: Alice owns `stage`; nobody else is anything.
    let app = axum::Router::new().route(
        "/roles/{room}/{address}",
        axum::routing::get(
            move |axum::extract::Path((room, address)): axum::extract::Path<(String, String)>| {
                let owner_address = owner_address.clone();
                async move {
                    let role = if room == "stage" && address == owner_address {
                        "owner"
                    } else {
                        "none"
                    };
                    axum::Json(json!({ "role": role }))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let oracle = tokio::spawn(async move { axum::serve(listener, app).await });
    let (server, base) = start(
        "cache_secs = 0\n[plugins.config.oracle]\nupstream = \"roles\"\n",
        &format!("[upstreams.roles]\nurl = \"{url}\"\n"),
    )
    .await;
    assert!(admitted(
        &post(&base, "publish", "stage", Some(&owner.token)).await
    ));
    let bob = sign_async(Scheme::Sr25519, BOB, "stage", SignOptions::default()).await;
    refused(
        &post(&base, "publish", "stage", Some(&bob.token)).await,
        403,
        "not the owner or a co-host",
    );
    // The oracle gone: fail closed, with the short reason.
    oracle.abort();
    let _ = oracle.await;
    let again = sign_async(Scheme::Sr25519, ALICE, "stage", SignOptions::default()).await;
    refused(
        &post(&base, "publish", "stage", Some(&again.token)).await,
        403,
        "role oracle unreachable",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_can_be_signed_and_networks_restricted() {
    const TEMPLATE: &str = "switchboard:{action}:{room}:{timestamp}";
    let signed = |action: &str, ss58: u16| SignOptions {
        action: Some(action.into()),
        template: Some(TEMPLATE.into()),
        ss58: Some(ss58),
        ..SignOptions::default()
    };
    let alice = sign(Scheme::Sr25519, ALICE, "stage", signed("publish", 0));
    let (server, base) = start(
        &format!(
            "message = \"{TEMPLATE}\"\nss58_prefixes = [0]\n\
             [[plugins.config.rooms]]\nroom = \"stage\"\nowners = [\"{}\"]\n",
            alice.address
        ),
        "",
    )
    .await;
    // Polkadot's prefix (0) is accepted, the generic one (42) is not.
    assert!(alice.address.starts_with('1'), "{}", alice.address);
    assert!(admitted(
        &post(&base, "publish", "stage", Some(&alice.token)).await
    ));
    let generic = sign_async(Scheme::Sr25519, ALICE, "stage", signed("publish", 42)).await;
    refused(
        &post(&base, "publish", "stage", Some(&generic.token)).await,
        401,
        "network prefix 42 is not accepted",
    );
    // Signed for playing, used to publish: the action is part of the message.
    let for_play = sign_async(Scheme::Sr25519, ALICE, "stage", signed("play", 0)).await;
    refused(
        &post(&base, "publish", "stage", Some(&for_play.token)).await,
        401,
        "bad signature",
    );
    assert!(admitted(
        &post(&base, "play", "stage", Some(&for_play.token)).await
    ));
    // A damaged SS58 address fails its checksum.
    let mut claims = chain::decode_token(
        &sign_async(Scheme::Sr25519, ALICE, "stage", signed("play", 0))
            .await
            .token,
    );
    let address = claims["address"].as_str().unwrap().to_owned();
    let last = if address.ends_with('2') { '3' } else { '2' };
    claims["address"] = json!(format!("{}{last}", &address[..address.len() - 1]));
    let got = post(&base, "play", "stage", Some(&chain::encode_token(&claims))).await;
    assert_eq!(got.0, 401, "{got:?}");
    assert!(got.1.contains("address checksum does not match"), "{got:?}");
    server.shutdown().await;
    // A network prefix of 64 or more (two-byte SS58 form) decodes, and names the same wallet.
    let (server, base) = start(
        &format!(
            "[[plugins.config.rooms]]\nroom = \"stage\"\nowners = [\"{}\"]\n",
            sign(Scheme::Sr25519, ALICE, "x", SignOptions::default()).address
        ),
        "",
    )
    .await;
    let two_byte = sign_async(
        Scheme::Sr25519,
        ALICE,
        "stage",
        SignOptions {
            ss58: Some(1000),
            ..SignOptions::default()
        },
    )
    .await;
    assert!(admitted(
        &post(&base, "publish", "stage", Some(&two_byte.token)).await
    ));
    server.shutdown().await;
}
