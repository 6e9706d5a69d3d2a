//! `switchboard:plugin@0.1.0` (`plugin-sdk/wit/v0.1.0/plugin.wit`), released and frozen.
//!
//! Components built against it keep loading unchanged. Its host imports are implemented here
//! by delegating to the latest ones (`imports.rs`) with conversions, and the hooks call its
//! exports through the conversions below, so nothing outside this file names 0.1.0 types
//! except the hooks' per-version dispatch.
//!
//! What 0.1.0 lacks: `identity.attributes` (a 0.1.0 identity has none) and
//! `auth-request.replacing` (not shown to 0.1.0 plugins; `counts` still exclude the replaced
//! publisher, which is what a 0.1.0 room policy needs to let a publisher take over).

use self::switchboard::plugin as old;
use super::latest::switchboard::plugin as new;
use crate::plugins::imports::CallState;

wasmtime::component::bindgen!({
    world: "full",
    path: "../plugin-sdk/wit/v0.1.0",
    imports: {
        "switchboard:plugin/http.fetch": async,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

// ---- Host imports: the 0.1.0 interfaces, served by the latest implementation. ----

impl old::types::Host for CallState {}

impl old::log::Host for CallState {
    fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        new::log::Host::log(self, level.into(), message)
    }
}

impl old::clock::Host for CallState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        new::clock::Host::now_ms(self)
    }
}

impl old::crypto::Host for CallState {
    fn verify(
        &mut self,
        algorithm: old::crypto::SignatureAlgorithm,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        new::crypto::Host::verify(self, algorithm.into(), public_key, message, signature)
    }
}

impl old::kv::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, old::kv::KvError>> {
        Ok(new::kv::Host::get(self, key)?.map_err(Into::into))
    }

    fn set_with_ttl(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), old::kv::KvError>> {
        Ok(new::kv::Host::set_with_ttl(self, key, value, ttl_ms)?.map_err(Into::into))
    }

    fn compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, old::kv::KvError>> {
        Ok(new::kv::Host::compare_and_set(self, key, expected, value, ttl_ms)?.map_err(Into::into))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, old::kv::KvError>> {
        Ok(new::kv::Host::delete(self, key)?.map_err(Into::into))
    }
}

impl old::http::Host for CallState {
    async fn fetch(
        &mut self,
        req: old::http::Request,
    ) -> Result<old::http::Response, old::http::HttpError> {
        new::http::Host::fetch(self, req.into())
            .await
            .map(Into::into)
            .map_err(Into::into)
    }
}

impl From<old::log::Level> for new::log::Level {
    fn from(level: old::log::Level) -> Self {
        match level {
            old::log::Level::Trace => Self::Trace,
            old::log::Level::Debug => Self::Debug,
            old::log::Level::Info => Self::Info,
            old::log::Level::Warn => Self::Warn,
            old::log::Level::Error => Self::Error,
        }
    }
}

impl From<old::crypto::SignatureAlgorithm> for new::crypto::SignatureAlgorithm {
    fn from(algorithm: old::crypto::SignatureAlgorithm) -> Self {
        match algorithm {
            old::crypto::SignatureAlgorithm::RsaPkcs1Sha256 => Self::RsaPkcs1Sha256,
            old::crypto::SignatureAlgorithm::EcdsaP256Sha256 => Self::EcdsaP256Sha256,
            old::crypto::SignatureAlgorithm::Ed25519 => Self::Ed25519,
        }
    }
}

impl From<new::kv::KvError> for old::kv::KvError {
    fn from(e: new::kv::KvError) -> Self {
        match e {
            new::kv::KvError::NotGranted => Self::NotGranted,
            new::kv::KvError::TooLarge => Self::TooLarge,
            new::kv::KvError::Full => Self::Full,
        }
    }
}

impl From<old::http::Request> for new::http::Request {
    fn from(r: old::http::Request) -> Self {
        Self {
            upstream: r.upstream,
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<new::http::Response> for old::http::Response {
    fn from(r: new::http::Response) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<new::http::HttpError> for old::http::HttpError {
    fn from(e: new::http::HttpError) -> Self {
        match e {
            new::http::HttpError::UnknownUpstream(name) => Self::UnknownUpstream(name),
            new::http::HttpError::InvalidRequest(why) => Self::InvalidRequest(why),
            new::http::HttpError::Timeout => Self::Timeout,
            new::http::HttpError::Transport(why) => Self::Transport(why),
            new::http::HttpError::TooLarge => Self::TooLarge,
        }
    }
}

// ---- Exports: what the hooks hand to and take from a 0.1.0 component. ----

impl From<&new::types::AuthRequest> for old::types::AuthRequest {
    /// `replacing` has no 0.1.0 field; `counts` already exclude the replaced publisher.
    fn from(r: &new::types::AuthRequest) -> Self {
        Self {
            room: r.room.clone(),
            action: match r.action {
                new::types::Action::Publish => old::types::Action::Publish,
                new::types::Action::Play => old::types::Action::Play,
            },
            credential: r.credential.clone(),
            remote_addr: r.remote_addr.clone(),
            counts: old::types::RoomCounts {
                publishers: r.counts.publishers,
                viewers: r.counts.viewers,
            },
        }
    }
}

impl From<&new::types::Identity> for old::types::Identity {
    /// Attributes have no 0.1.0 field and are not shown to 0.1.0 room policies.
    fn from(id: &new::types::Identity) -> Self {
        Self {
            subject: id.subject.clone(),
            expires_at: id.expires_at,
            recheck_every_secs: id.recheck_every_secs,
        }
    }
}

impl From<old::types::Identity> for new::types::Identity {
    fn from(id: old::types::Identity) -> Self {
        Self {
            subject: id.subject,
            attributes: Vec::new(),
            expires_at: id.expires_at,
            recheck_every_secs: id.recheck_every_secs,
        }
    }
}

impl From<old::types::Deny> for new::types::Deny {
    fn from(deny: old::types::Deny) -> Self {
        Self {
            kind: match deny.kind {
                old::types::DenyKind::Unauthorized => new::types::DenyKind::Unauthorized,
                old::types::DenyKind::Forbidden => new::types::DenyKind::Forbidden,
            },
            reason: deny.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_identities_convert_field_by_field() {
        let req = new::types::AuthRequest {
            room: "lobby".into(),
            action: new::types::Action::Publish,
            credential: Some("t".into()),
            remote_addr: Some("127.0.0.1:1".into()),
            counts: new::types::RoomCounts {
                publishers: 0,
                viewers: 7,
            },
            replacing: Some("alice".into()),
        };
        assert_eq!(
            old::types::AuthRequest::from(&req),
            old::types::AuthRequest {
                room: "lobby".into(),
                action: old::types::Action::Publish,
                credential: Some("t".into()),
                remote_addr: Some("127.0.0.1:1".into()),
                counts: old::types::RoomCounts {
                    publishers: 0,
                    viewers: 7,
                },
            }
        );

        let id = new::types::Identity::from(old::types::Identity {
            subject: "bob".into(),
            expires_at: Some(5),
            recheck_every_secs: Some(9),
        });
        assert!(id.attributes.is_empty());
        assert_eq!(
            old::types::Identity::from(&id),
            old::types::Identity {
                subject: "bob".into(),
                expires_at: Some(5),
                recheck_every_secs: Some(9),
            }
        );

        let deny = new::types::Deny::from(old::types::Deny {
            kind: old::types::DenyKind::Forbidden,
            reason: "no".into(),
        });
        assert_eq!(deny.kind, new::types::DenyKind::Forbidden);
        assert_eq!(
            old::http::HttpError::from(new::http::HttpError::Transport("tls".into())),
            old::http::HttpError::Transport("tls".into())
        );
    }
}
