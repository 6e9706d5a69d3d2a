//! Native tests of what needs no host: token decoding, messages, config checks, ABI shapes.
//! Signatures, SS58 checksums and chain lookups run through the host and are tested end to
//! end in `host/tests/chain_auth.rs` with tokens signed by Polkadot.js and ethers.

use super::*;
use base64::Engine;

fn token(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn tokens_decode_or_say_what_is_wrong() {
    let ok = token(r#"{"scheme":"eip191","address":"0xab","ts":5,"sig":"0x0102"}"#);
    let cred = Credential::decode(Some(&ok)).unwrap();
    assert_eq!(cred.scheme, Scheme::Eip191);
    assert_eq!(cred.ts_ms, 5);
    assert_eq!(cred.sig, vec![1, 2]);
    assert_eq!(Credential::decode(None), Err(TokenError::Missing));
    assert_eq!(Credential::decode(Some("  ")), Err(TokenError::Missing));
    assert_eq!(
        Credential::decode(Some("!!")),
        Err(TokenError::Malformed("not base64url"))
    );
    assert_eq!(
        Credential::decode(Some(&token("{}"))),
        Err(TokenError::Malformed("not the JSON object"))
    );
    let unknown = token(r#"{"scheme":"rsa","address":"x","ts":5,"sig":"0x"}"#);
    assert_eq!(
        Credential::decode(Some(&unknown)).unwrap_err().to_string(),
        "unknown scheme `rsa`"
    );
    let bad_sig = token(r#"{"scheme":"sr25519","address":"x","ts":5,"sig":"0xzz"}"#);
    assert!(matches!(
        Credential::decode(Some(&bad_sig)),
        Err(TokenError::Malformed(_))
    ));
    assert!(Credential::decode(Some(&"a".repeat(4000))).is_err());
}

#[test]
fn the_message_fills_the_template() {
    assert_eq!(
        token::message(
            "livestream:{room}:{timestamp}",
            "lobby",
            1700000000123,
            "play"
        ),
        "livestream:lobby:1700000000123"
    );
    assert_eq!(
        token::message("{action}@{room}/{timestamp}", "a", 1, "publish"),
        "publish@a/1"
    );
}

#[test]
fn hex_round_trips() {
    assert_eq!(token::decode_hex("0x00ff10"), Some(vec![0, 255, 16]));
    assert_eq!(token::decode_hex("0x0"), None);
    assert_eq!(token::encode_hex(&[0, 255, 16]), "0x00ff10");
}

fn settings(extra: &str) -> Result<ChainAuth, String> {
    let value: serde_json::Value = serde_json::from_str(extra).unwrap();
    ChainAuth::from_settings(serde_json::from_value(value).map_err(|e| e.to_string())?)
}

#[test]
fn config_errors_name_the_key() {
    assert!(settings("{}").is_ok());
    let err = |json: &str| settings(json).err().unwrap();
    assert!(err(r#"{"schemes": ["rsa"]}"#).starts_with("schemes:"));
    assert!(err(r#"{"schemes": []}"#).starts_with("schemes:"));
    assert!(err(r#"{"message": "hello {room}"}"#).starts_with("message:"));
    assert!(err(r#"{"max_age_secs": 0}"#).starts_with("max_age_secs:"));
    assert!(err(r#"{"ss58_prefixes": [20000]}"#).starts_with("ss58_prefixes:"));
    assert!(
        err(r#"{"rooms": [{"room": "a", "owners": ["0x12"]}]}"#).starts_with("rooms[0].owners:")
    );
    assert!(
        err(r#"{"rooms": [{"room": "a", "viewers": "ticket"}]}"#).starts_with("rooms[0].viewers:")
    );
    assert!(
        err(r#"{"evm": {"upstream": "c", "contract": "0x1234567890123456789012345678901234567890"}}"#)
            .starts_with("evm:")
    );
    assert!(
        err(r#"{"evm": {"upstream": "c", "contract": "0x1234567890123456789012345678901234567890", "owner_of": "ownerOf(bytes32)"}}"#)
            .starts_with("evm.owner_of:")
    );
    assert!(err(r#"{"surprise": 1}"#).contains("unknown field"));
}

#[test]
fn function_signatures_parse_their_parameters() {
    assert!(evm::Function::parse("ownerOf(string)").is_ok());
    assert!(evm::Function::parse("balanceOf(address, uint256)").is_ok());
    assert!(evm::Function::parse("isCoHost(string,address)").is_ok());
    assert!(evm::Function::parse("ownerOf").is_err());
    assert!(evm::Function::parse("(string)").is_err());
    assert!(evm::Function::parse("f(bool)").is_err());
}

#[test]
fn answers_decode_from_words() {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(&[0xab; 20]);
    assert_eq!(evm::as_address(&word), Some([0xab; 20]));
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(evm::as_u128(&one), Some(1));
    let mut huge = [0u8; 32];
    huge[0] = 1;
    assert_eq!(evm::as_u128(&huge), Some(u128::MAX));
    assert_eq!(evm::as_u128(&[0; 31]), None);
}

#[test]
fn role_sources_that_would_answer_for_everyone_are_refused() {
    let err = |json: &str| settings(json).err().unwrap();
    assert!(
        err(r#"{"oracle": {"upstream": "roles", "path": "/roles/{room}"}}"#)
            .starts_with("oracle.path:")
    );
    assert!(
        err(r#"{"evm": {"upstream": "c", "contract": "0x1234567890123456789012345678901234567890", "is_cohost": "isCoHost(string)"}}"#)
            .starts_with("evm.is_cohost:")
    );
    assert!(
        err(r#"{"evm": {"upstream": "c", "contract": "0x1234567890123456789012345678901234567890", "ticket": {"contract": "0x1234567890123456789012345678901234567890", "balance_of": "totalSupply()"}}}"#)
            .starts_with("evm.ticket.balance_of:")
    );
}

#[test]
fn token_ids_and_balances_beyond_64_bits_are_written_as_strings() {
    let ticket = |v: &str| {
        serde_json::from_str::<roles::TicketConfig>(&format!(
            r#"{{"contract": "0x1234567890123456789012345678901234567890", {v}}}"#
        ))
    };
    assert_eq!(ticket(r#""token_id": 7"#).unwrap().token_id, 7);
    assert_eq!(
        ticket(r#""token_id": "18446744073709551616""#)
            .unwrap()
            .token_id,
        1u128 << 64
    );
    assert_eq!(ticket(r#""min_balance": "0x10""#).unwrap().min_balance, 16);
    assert_eq!(ticket(r#""token_id": 0"#).unwrap().min_balance, 1);
    assert!(ticket(r#""min_balance": "lots""#).is_err());
}

#[test]
fn hex_refuses_signs_and_odd_lengths() {
    assert_eq!(token::decode_hex("0x+a+b"), None);
    assert_eq!(token::decode_hex("0xabc"), None);
}
