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
        if s.len() != 42 || !(s.starts_with("0x") || s.starts_with("0X")) {
            return Err(AddressError::NotEvm);
        }
        let bytes = decode_hex(s).ok_or(AddressError::NotEvm)?;
        let mut out = [0; 20];
        out.copy_from_slice(&bytes);
        Ok(Address::Evm(out))
    }

    /// Either form, by its shape (configs list both).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.starts_with("0x") || s.starts_with("0X") {
            Address::evm(s)
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

    /// The subject the host sees: the SS58 address as the wallet wrote it, or the Ethereum
    /// address in lower case (one subject per wallet whatever the checksum casing).
    pub fn subject(&self, as_written: &str) -> String {
        match self {
            Address::Substrate { .. } => as_written.to_owned(),
            Address::Evm(a) => encode_hex(a),
        }
    }
}
