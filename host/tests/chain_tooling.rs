//! The chain-auth tests' tooling (`support/chain.rs`, `host/tests/chain/`) works on its own,
//! before any plugin is involved: ganache starts, the fixtures deploy, and what a transaction
//! writes an `eth_call` reads back; the wallet libraries sign tokens in the agreed format, for
//! the addresses the tests expect. So a failure in `chain_auth.rs` points at the plugin, not at
//! the tooling.

mod support;

use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use support::chain::{ACCOUNTS, Ganache, MNEMONIC, Scheme, SignOptions, sign_token};

const ZERO_ADDRESS: &str = "0x0000000000000000000000000000000000000000";
/// `//Alice`'s sr25519 address with the generic Substrate prefix (42), as every Polkadot tool
/// prints it.
const ALICE_SR25519: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

#[test]
fn ganache_runs_the_room_and_ticket_contracts() {
    let node = Ganache::start();
    assert_eq!(node.rpc("eth_chainId", json!([])), json!("0x539"));
    let contracts = node.deploy();
    let (owner, guest) = (ACCOUNTS[1].address, ACCOUNTS[2].address);
    let rooms = contracts.rooms.as_str();

    let owner_of =
        |room: &str| node.call(rooms, "ownerOf(string) returns (address)", json!([room]));
    assert_eq!(
        owner_of("lobby"),
        json!(ZERO_ADDRESS),
        "no owner before setOwner"
    );
    let sent = node.send(rooms, "setOwner(string,address)", json!(["lobby", owner]));
    assert_eq!(sent["status"], json!(1), "{sent}");
    assert_eq!(owner_of("lobby"), json!(owner));
    assert_eq!(owner_of("other"), json!(ZERO_ADDRESS));

    let is_co_host = || {
        node.call(
            rooms,
            "isCoHost(string,address) view returns (bool)",
            json!(["lobby", guest]),
        )
    };
    assert_eq!(is_co_host(), json!(false));
    node.send(
        rooms,
        "setCoHost(string,address,bool)",
        json!(["lobby", guest, true]),
    );
    assert_eq!(is_co_host(), json!(true));

    let ticket = contracts.ticket.as_str();
    let tickets = || {
        node.call(
            ticket,
            "balanceOf(address) returns (uint256)",
            json!([guest]),
        )
    };
    let erc1155 = |id: u64| {
        node.call(
            ticket,
            "balanceOf(address,uint256) returns (uint256)",
            json!([guest, id]),
        )
    };
    node.send(ticket, "mint(address)", json!([guest]));
    assert_eq!(tickets(), json!("1"));
    node.send_from(
        3,
        ticket,
        "mint1155(address,uint256,uint256)",
        json!([guest, 7, "5"]),
    )
    .expect("any account may mint");
    assert_eq!(erc1155(7), json!("5"));
    assert_eq!(erc1155(8), json!("0"));
    node.send(ticket, "burnFrom(address)", json!([guest]));
    assert_eq!(tickets(), json!("0"));
    let refused = node.send_from(0, ticket, "burnFrom(address)", json!([guest]));
    assert!(
        refused.is_err(),
        "burning a ticket nobody holds reverts: {refused:?}"
    );
}

#[test]
fn wallets_sign_tokens_in_the_agreed_format() {
    let at = |ts_ms| SignOptions {
        ts_ms: Some(ts_ms),
        ..SignOptions::default()
    };

    let alice = sign_token(Scheme::Sr25519, "//Alice", "lobby", &at(1_700_000_000_000));
    assert_eq!(alice.address, ALICE_SR25519);
    assert_eq!(alice.message, "livestream:lobby:1700000000000");
    assert_claims(
        &alice.claims(),
        "sr25519",
        ALICE_SR25519,
        1_700_000_000_000,
        64,
    );

    let wrapped = SignOptions {
        wrap: true,
        ss58: Some(0),
        template: Some("{action} {room} at {timestamp}".into()),
        action: Some("play".into()),
        ..at(5)
    };
    let ed = sign_token(Scheme::Ed25519, "//Alice", "stage", &wrapped);
    assert!(
        ed.address.starts_with('1'),
        "Polkadot's prefix 0: {}",
        ed.address
    );
    assert_eq!(
        ed.message, "play stage at 5",
        "<Bytes> wraps the signed bytes only"
    );
    assert_claims(&ed.claims(), "ed25519", &ed.address, 5, 64);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let key = ACCOUNTS[0].private_key;
    let eth = sign_token(Scheme::Eip191, key, "lobby", &SignOptions::default());
    assert_eq!(
        eth.address, ACCOUNTS[0].address,
        "the address ganache funds"
    );
    let ts = eth.claims()["ts"].as_u64().expect("ts is a number");
    assert!(
        ts.abs_diff(now) < 60_000,
        "ts defaults to now: {ts} vs {now}"
    );
    assert_eq!(eth.message, format!("livestream:lobby:{ts}"));
    assert_claims(&eth.claims(), "eip191", ACCOUNTS[0].address, ts, 65);

    let from_phrase = sign_token(Scheme::Eip191, MNEMONIC, "lobby", &at(1));
    assert_eq!(
        from_phrase.address, ACCOUNTS[0].address,
        "account 0 of the mnemonic"
    );
}

/// Exactly `scheme`, `address`, `ts` and a `sig` of `sig_len` bytes in 0x hex.
fn assert_claims(claims: &Value, scheme: &str, address: &str, ts: u64, sig_len: usize) {
    let keys: Vec<&str> = claims
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{claims}");
    assert_eq!(claims["scheme"], json!(scheme));
    assert_eq!(claims["address"], json!(address));
    assert_eq!(claims["ts"], json!(ts));
    let sig = claims["sig"].as_str().expect("sig is a string");
    let hex = sig.strip_prefix("0x").expect("0x-prefixed sig");
    assert_eq!(hex.len(), 2 * sig_len, "{sig}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{sig}");
}
