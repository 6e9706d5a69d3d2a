//! Wallet addresses: SS58 (Substrate: sr25519, ed25519) and Ethereum (`0x` + 40 hex).
//!
//! SS58 is base58 of `prefix || public key || checksum`, the checksum being the first two
//! bytes of BLAKE2b-512(`"SS58PRE" || prefix || key`); the prefix (network) is one byte for
//! 0-63 and two bytes for 64-16383. Two addresses are the same wallet when their keys are
//! equal, whatever the network prefix.

use crate::token::{decode_hex, encode_hex};
use std::fmt;
use switchboard_plugin_sdk::crypto;

/// A parsed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Substrate account: its network prefix and 32-byte public key.
    Substrate { prefix: u16, key: [u8; 32] },
    /// An Ethereum account: 20 bytes.
    Evm([u8; 20]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    NotSs58,
    BadChecksum,
    UnsupportedSs58Length,
    NotEvm,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::NotSs58 => "address is not SS58",
            AddressError::BadChecksum => "address checksum does not match",
            AddressError::UnsupportedSs58Length => "address is not a 32-byte SS58 account",
            AddressError::NotEvm => "address is not 0x + 40 hex digits",
        })
    }
}

impl Address {
    /// Parse an SS58 address, checking its checksum (BLAKE2b through the host).
    pub fn ss58(s: &str) -> Result<Address, AddressError> {
        let raw = bs58::decode(s)
            .into_vec()
            .map_err(|_| AddressError::NotSs58)?;
        let (prefix, prefix_len) = match raw.first() {
            Some(&b) if b < 64 => (b as u16, 1),
            Some(&b) if b < 128 => {
                let second = *raw.get(1).ok_or(AddressError::NotSs58)?;
                // The two-byte form packs 14 bits; see the SS58 registry's reference code.
                let lower = ((b << 2) | (second >> 6)) as u16;
                let upper = (second & 0b0011_1111) as u16;
                (lower | (upper << 8), 2)
            }
            _ => return Err(AddressError::NotSs58),
        };
        if raw.len() != prefix_len + 32 + 2 {
            return Err(AddressError::UnsupportedSs58Length);
        }
        let body = &raw[..prefix_len + 32];
        let mut pre = b"SS58PRE".to_vec();
        pre.extend_from_slice(body);
        let hash = crypto::blake2b(&pre, 64);
        if hash.get(..2) != Some(&raw[prefix_len + 32..]) {
            return Err(AddressError::BadChecksum);
        }
        let mut key = [0; 32];
        key.copy_from_slice(&raw[prefix_len..prefix_len + 32]);
        Ok(Address::Substrate { prefix, key })
    }

    /// Parse `0x` + 40 hex digits, checksummed (EIP-55) or not: the checksum is not required
    /// since wallets and configs write both forms.
    pub fn evm(s: &str) -> Result<Address, AddressError> {
        Address::evm_unchecked(s)
    }

    /// Like [`Address::evm`], and a mixed-case address must carry a valid EIP-55 checksum:
    /// for configs, where a typo must fail the load rather than name nobody.
    pub fn evm_checked(s: &str) -> Result<Address, AddressError> {
        let address = Address::evm_unchecked(s)?;
        let hex = &s[2..];
        let mixed = hex.bytes().any(|b| b.is_ascii_uppercase())
            && hex.bytes().any(|b| b.is_ascii_lowercase());
        if mixed {
            let lower = hex.to_ascii_lowercase();
            let hash = crypto::keccak256(lower.as_bytes());
            let ok = hex.bytes().enumerate().all(|(i, c)| {
                let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
                !c.is_ascii_alphabetic() || c.is_ascii_uppercase() == (nibble >= 8)
            });
            if !ok {
                return Err(AddressError::BadChecksum);
            }
        }
        Ok(address)
    }

    fn evm_unchecked(s: &str) -> Result<Address, AddressError> {
        if s.len() != 42 || !(s.starts_with("0x") || s.starts_with("0X")) {
            return Err(AddressError::NotEvm);
        }
        let bytes = decode_hex(s).ok_or(AddressError::NotEvm)?;
        let mut out = [0; 20];
        out.copy_from_slice(&bytes);
        Ok(Address::Evm(out))
    }

    /// Either form, by its shape (configs list both); EIP-55 checked.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.starts_with("0x") || s.starts_with("0X") {
            Address::evm_checked(s)
        } else {
            Address::ss58(s)
        }
    }

    /// Same wallet: equal keys (any SS58 network), or equal Ethereum addresses.
    pub fn same_wallet(&self, other: &Address) -> bool {
        match (self, other) {
            (Address::Substrate { key: a, .. }, Address::Substrate { key: b, .. }) => a == b,
            (Address::Evm(a), Address::Evm(b)) => a == b,
            _ => false,
        }
    }

    /// The `0x` hex an EVM contract call takes; none for Substrate accounts.
    pub fn evm_bytes(&self) -> Option<&[u8; 20]> {
        match self {
            Address::Evm(a) => Some(a),
            Address::Substrate { .. } => None,
        }
    }

    /// The subject the host sees, one per wallet: SS58 re-encoded with `prefix` (whatever
    /// network form the client wrote), Ethereum addresses in lower case.
    pub fn subject(&self, prefix: u16) -> String {
        match self {
            Address::Substrate { key, .. } => encode_ss58(prefix, key),
            Address::Evm(a) => encode_hex(a),
        }
    }

    /// The wallet's key or address bytes, as hex: what identifies the signer.
    pub fn signer_hex(&self) -> String {
        match self {
            Address::Substrate { key, .. } => encode_hex(key),
            Address::Evm(a) => encode_hex(a),
        }
    }
}

/// SS58 of `key` under network `prefix` (one byte below 64, two bytes up to 16383).
pub fn encode_ss58(prefix: u16, key: &[u8; 32]) -> String {
    let mut body = if prefix < 64 {
        vec![prefix as u8]
    } else {
        // The SS58 registry's two-byte form: 14 bits spread over two bytes.
        let first = (((prefix & 0b0000_0000_1111_1100) as u8) >> 2) | 0b0100_0000;
        let second = ((prefix >> 8) as u8) | (((prefix & 0b0000_0000_0000_0011) as u8) << 6);
        vec![first, second]
    };
    body.extend_from_slice(key);
    let mut pre = b"SS58PRE".to_vec();
    pre.extend_from_slice(&body);
    let hash = crypto::blake2b(&pre, 64);
    body.extend_from_slice(&hash[..2]);
    bs58::encode(body).into_string()
}
