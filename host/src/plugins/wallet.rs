//! The wallet-signature primitives behind the `crypto` import (WIT 0.2.0): sr25519 as
//! Polkadot wallets sign, secp256k1 public-key recovery and Keccak-256 as Ethereum wallets
//! sign (libsecp256k1), BLAKE2b for SS58 checksums. Native, so plugins keep no heavy arithmetic in wasm.
//! Malformed input is `false` / `None`, never an error: the plugin decides what it means.

use blake2::digest::{Update, VariableOutput};
use sha3::Digest;

/// Substrate's signing context for sr25519 (what `@polkadot/util-crypto` uses).
const SUBSTRATE_CONTEXT: &[u8] = b"substrate";

/// Whether the 64-byte sr25519 `signature` over `message` verifies under the 32-byte key.
pub fn verify_sr25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = schnorrkel::PublicKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(signature) = schnorrkel::Signature::from_bytes(signature) else {
        return false;
    };
    key.verify_simple(SUBSTRATE_CONTEXT, message, &signature)
        .is_ok()
}

/// The uncompressed public key (`x || y`, 64 bytes) that made the 65-byte `r || s || v`
/// `signature` over the 32-byte `prehash`; low `s` only, `v` in 0, 1, 27, 28.
pub fn recover_secp256k1(prehash: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    use std::sync::LazyLock;
    static CONTEXT: LazyLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> =
        LazyLock::new(secp256k1::Secp256k1::verification_only);
    let prehash: [u8; 32] = prehash.try_into().ok()?;
    if signature.len() != 65 {
        return None;
    }
    let v = match signature[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return None,
    };
    let id = RecoveryId::try_from(i32::from(v)).ok()?;
    let sig = RecoverableSignature::from_compact(&signature[..64], id).ok()?;
    // High-s signatures are malleable copies of low-s ones: refuse them, as Ethereum does.
    let standard = sig.to_standard();
    let mut normalized = standard;
    normalized.normalize_s();
    if normalized != standard {
        return None;
    }
    let message = secp256k1::Message::from_digest(prehash);
    let key = CONTEXT.recover_ecdsa(&message, &sig).ok()?;
    Some(key.serialize_uncompressed()[1..].to_vec())
}

/// Keccak-256 of `data`.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    sha3::Keccak256::digest(data).into()
}

/// BLAKE2b of `data`, `out_len` bytes (1 to 64; anything else gives 64).
pub fn blake2b(data: &[u8], out_len: u8) -> Vec<u8> {
    let len = match out_len {
        1..=64 => out_len as usize,
        _ => 64,
    };
    let mut hasher = blake2::Blake2bVar::new(len).expect("1 to 64 bytes is a valid length");
    hasher.update(data);
    let mut out = vec![0; len];
    hasher
        .finalize_variable(&mut out)
        .expect("the buffer has the requested length");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_match_published_vectors() {
        // Keccak-256 of the empty string (Ethereum's empty code hash).
        assert_eq!(
            hex(&keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        // RFC 7693 Appendix A: BLAKE2b-512("abc").
        assert_eq!(
            hex(&blake2b(b"abc", 64)),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
        assert_eq!(blake2b(b"abc", 32).len(), 32);
        assert_eq!(blake2b(b"abc", 0), blake2b(b"abc", 64));
    }

    #[test]
    fn sr25519_verifies_only_the_signed_message() {
        let keys = schnorrkel::Keypair::generate();
        let sig = keys.sign_simple(SUBSTRATE_CONTEXT, b"livestream:lobby:1");
        let public = keys.public.to_bytes();
        assert!(verify_sr25519(
            &public,
            b"livestream:lobby:1",
            &sig.to_bytes()
        ));
        assert!(!verify_sr25519(
            &public,
            b"livestream:lobby:2",
            &sig.to_bytes()
        ));
        assert!(!verify_sr25519(
            &public[..31],
            b"livestream:lobby:1",
            &sig.to_bytes()
        ));
        assert!(!verify_sr25519(&public, b"livestream:lobby:1", &[0; 64]));
    }

    #[test]
    fn secp256k1_recovers_the_signer_and_refuses_high_s() {
        use k256::ecdsa::SigningKey;
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        let prehash = keccak256(b"message");
        let (sig, id) = key.sign_prehash_recoverable(&prehash).unwrap();
        let mut rsv = sig.to_bytes().to_vec();
        rsv.push(id.to_byte() + 27);
        let expected = key.verifying_key().to_encoded_point(false).as_bytes()[1..].to_vec();
        assert_eq!(recover_secp256k1(&prehash, &rsv), Some(expected.clone()));
        rsv[64] -= 27;
        assert_eq!(recover_secp256k1(&prehash, &rsv), Some(expected.clone()));
        // The same signature with s replaced by n - s (high s) is refused.
        let high = k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let mut high_rsv = high.to_bytes().to_vec();
        high_rsv.push((id.to_byte() ^ 1) + 27);
        assert_eq!(recover_secp256k1(&prehash, &high_rsv), None);
        assert_eq!(recover_secp256k1(&prehash[..31], &rsv), None);
        rsv[64] = 5;
        assert_eq!(recover_secp256k1(&prehash, &rsv), None);
    }
}
