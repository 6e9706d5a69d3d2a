//! Does the signature in a credential come from its address? All arithmetic runs natively in
//! the host through the `crypto` import; this file only frames the messages as wallets do.

use crate::address::Address;
use crate::token::{Credential, Scheme};
use switchboard_plugin_sdk::crypto::{self, SignatureAlgorithm};

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The address does not parse for its scheme (named reason).
    Address(String),
    /// The SS58 network prefix is not in `ss58_prefixes`.
    Network(u16),
    BadSignature,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Address(why) => f.write_str(why),
            SignatureError::Network(p) => write!(f, "SS58 network prefix {p} is not accepted"),
            SignatureError::BadSignature => f.write_str("bad signature"),
        }
    }
}

/// Verify `cred` over `message`; the parsed address on success.
///
/// sr25519 and ed25519 accept both the raw message and the `<Bytes>...</Bytes>` wrapping that
/// Polkadot browser extensions apply to `signRaw`. EIP-191 is `personal_sign`: Keccak-256
/// of `"\x19Ethereum Signed Message:\n" + len + message`, signer recovered and compared.
pub fn verify(
    cred: &Credential,
    message: &str,
    ss58_prefixes: &[u16],
) -> Result<Address, SignatureError> {
    match cred.scheme {
        Scheme::Sr25519 | Scheme::Ed25519 => {
            let address =
                Address::ss58(&cred.address).map_err(|e| SignatureError::Address(e.to_string()))?;
            let Address::Substrate { prefix, key } = &address else {
                unreachable!("ss58 parses to a Substrate address")
            };
            if !ss58_prefixes.is_empty() && !ss58_prefixes.contains(prefix) {
                return Err(SignatureError::Network(*prefix));
            }
            let wrapped = format!("<Bytes>{message}</Bytes>");
            let ok = [message.as_bytes(), wrapped.as_bytes()]
                .iter()
                .any(|m| match cred.scheme {
                    Scheme::Sr25519 => crypto::verify_sr25519(key, m, &cred.sig),
                    _ => crypto::verify(SignatureAlgorithm::Ed25519, key, m, &cred.sig),
                });
            if ok {
                Ok(address)
            } else {
                Err(SignatureError::BadSignature)
            }
        }
        Scheme::Eip191 => {
            let address =
                Address::evm(&cred.address).map_err(|e| SignatureError::Address(e.to_string()))?;
            let mut framed =
                format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
            framed.extend_from_slice(message.as_bytes());
            let prehash = crypto::keccak256(&framed);
            let signer = crypto::recover_secp256k1(&prehash, &cred.sig)
                .ok_or(SignatureError::BadSignature)?;
            let hash = crypto::keccak256(&signer);
            if address.evm_bytes().map(|a| &a[..]) == Some(&hash[12..]) {
                Ok(address)
            } else {
                Err(SignatureError::BadSignature)
            }
        }
    }
}
