//! Write Switchboard policy plugins in Rust.
//!
//! A plugin is a WebAssembly component the server loads from `config.toml`. It decides who may
//! publish or play in a room (the `auth` hook), what a room allows (the `room-policy` hook) and
//! which events reach which webhook endpoint, in which shape (the `webhook` hook), and what
//! gets recorded of each publish session (the `recorder` hook).
//! Implement [`Plugin`] — every method except [`Plugin::new`] has a default — and register the
//! type once with [`register!`]:
//!
//! ```no_run
//! use switchboard_plugin_sdk::{AuthRequest, Config, Deny, Identity, Plugin};
//!
//! struct OnlyAlice;
//!
//! impl Plugin for OnlyAlice {
//!     fn new(_config: Config) -> Result<Self, String> {
//!         Ok(OnlyAlice)
//!     }
//!
//!     fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
//!         match req.credential.as_deref() {
//!             Some("alice") => Ok(Identity::new("alice")),
//!             _ => Err(Deny::unauthorized("who are you?")),
//!         }
//!     }
//! }
//!
//! switchboard_plugin_sdk::register!(OnlyAlice);
//! ```
//!
//! # Building
//!
//! - Rust 1.95 or newer (`rust-version = "1.95"`), with `rustup target add
//!   wasm32-unknown-unknown`.
//! - The plugin crate needs `[lib] crate-type = ["cdylib"]` (add `"rlib"` too for native unit
//!   tests); `cargo xtask plugins` refuses plugin-workspace members without it.
//! - This SDK is not on crates.io: depend on it by path from a checkout of the Switchboard
//!   repository, e.g. `switchboard-plugin-sdk = { path = "../switchboard/plugin-sdk" }`.
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` and turn the module into
//! a component with `wasm-tools component new` (or, inside the repository,
//! `cargo xtask plugins`); `docs/plugins.md` walks through it.
//!
//! # Interface version
//!
//! This SDK builds against `switchboard:plugin@0.2.0` (`plugin-sdk/wit/v0.2.0/plugin.wit`).
//! Components built against the released 0.1.0 keep loading unchanged; a rebuild with this
//! SDK gives them [`Identity::attributes`] and [`AuthRequest::replacing`].
//!
//! # Instances
//!
//! The host runs every call in a fresh instance: it calls [`Plugin::new`] with the plugin's
//! config, then exactly one hook. Nothing survives between calls except what the plugin stores
//! through [`kv`]. Keep `new` cheap (parse, do not fetch).

extern crate self as switchboard_plugin_sdk;

pub mod glob;

/// Raw bindings generated from `wit/v0.2.0/plugin.wit` (world `full`). Plugin authors
/// normally use the re-exports and helpers at the crate root instead.
pub mod bindings {
    wit_bindgen::generate!({
        world: "full",
        path: "wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_full",
        default_bindings_module: "::switchboard_plugin_sdk::bindings",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::exports::switchboard::plugin::recorder::{
    Container, PublishSession, RecordingPlan, Track, TrackKind,
};
pub use bindings::exports::switchboard::plugin::webhook_router::{
    Decision as WebhookDecision, Delivery, WebhookEvent,
};
use bindings::exports::switchboard::plugin::{
    authenticator, lifecycle, policy, recorder, webhook_router,
};
pub use bindings::switchboard::plugin::types::{
    Action, AuthRequest, Deny, DenyKind, Identity, RoomCounts,
};

/// A Switchboard plugin. One value is built per instance by [`Plugin::new`]; the hook methods
/// then answer a single request.
pub trait Plugin: Sized + 'static {
    /// Build the plugin from its `config` table in `config.toml`. An `Err` fails the plugin's
    /// load at server start-up (or reload) and is shown to the operator, so name the key.
    fn new(config: Config) -> Result<Self, String>;

    /// The `auth` hook: who is the caller? The default refuses everyone, so a plugin that is
    /// configured for `auth` without implementing it fails closed.
    ///
    /// Attach facts later hooks may use with [`Identity::with_attribute`]. For a publish
    /// request that would take over the room's live publisher, [`AuthRequest::replacing`]
    /// names that publisher's subject.
    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        let _ = req;
        Err(Deny::unauthorized(
            "this plugin does not implement the auth hook",
        ))
    }

    /// The `room-policy` hook: may `identity` do `req.action` in `req.room` right now?
    /// The default allows everything.
    ///
    /// `req.counts` includes sessions still being set up and never the caller, nor the
    /// publisher named by `req.replacing` (so `max_publishers = 1` lets a publisher take over
    /// from its predecessor).
    fn check_room(&self, req: &AuthRequest, identity: &Identity) -> Result<(), Deny> {
        let _ = (req, identity);
        Ok(())
    }

    /// The `webhook` hook: deliver `event` (its JSON `body`) as is, reshaped, or not at all,
    /// and to which of `event.endpoints` (the `[[webhooks]]` whose filter matches). The default
    /// delivers it as is to all of them. A panic or a timeout loses nothing: the host then
    /// delivers the event as is.
    fn route_webhook(&self, event: &WebhookEvent) -> WebhookDecision {
        let _ = event;
        WebhookDecision::as_is()
    }

    /// The `recorder` hook: whether and how to record a publish session that just started
    /// (its room, its publisher's identity with the attributes their auth plugin attached,
    /// its tracks). The default records nothing. A panic or a timeout records nothing.
    fn recording_plan(&self, session: &PublishSession) -> Option<RecordingPlan> {
        let _ = session;
        None
    }

    /// The `recorder` hook: the publish session `session` in `room` ended.
    fn publish_ended(&self, room: &str, session: &str) {
        let _ = (room, session);
    }
}

impl WebhookDecision {
    /// Deliver the event's body as it is, to every endpoint offered.
    pub fn as_is() -> Self {
        WebhookDecision {
            delivery: Delivery::AsIs,
            endpoints: None,
        }
    }

    /// Deliver nothing.
    pub fn drop_event() -> Self {
        WebhookDecision {
            delivery: Delivery::Drop,
            endpoints: None,
        }
    }

    /// Deliver this JSON document instead of the event's body (at most 256 KiB; anything
    /// that is not JSON counts as a failure and the event goes as is).
    pub fn reshaped(body: impl Into<String>) -> Self {
        WebhookDecision {
            delivery: Delivery::Reshaped(body.into()),
            endpoints: None,
        }
    }

    /// Only to these endpoints (names from `WebhookEvent::endpoints`; others are a failure).
    pub fn to<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.endpoints = Some(endpoints.into_iter().map(Into::into).collect());
        self
    }
}

/// The plugin's `config` table from `config.toml`, as JSON.
#[derive(Debug, Clone)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wrap a JSON document (what the host hands to `configure`).
    pub fn from_json(json: impl Into<String>) -> Self {
        Self { json: json.into() }
    }

    /// The raw JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Deserialize into the plugin's own settings type. Errors name the offending key, e.g.
    /// ``keys[1].alg: unknown variant `HS999`, expected one of ...``.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(&self.json);
        serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            // The JSON is generated by the host from TOML, so positions in it mean nothing
            // to the operator.
            let mut message = err.into_inner().to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            if path == "." {
                message
            } else {
                format!("{path}: {message}")
            }
        })
    }
}

impl Deny {
    /// No credential, or one that cannot be verified (HTTP 401).
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Deny {
            kind: DenyKind::Unauthorized,
            reason: reason.into(),
        }
    }

    /// A verified caller who may not do this here (HTTP 403).
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Deny {
            kind: DenyKind::Forbidden,
            reason: reason.into(),
        }
    }
}

impl Identity {
    /// An identity with no attributes, no expiry and no periodic re-check.
    pub fn new(subject: impl Into<String>) -> Self {
        Identity {
            subject: subject.into(),
            attributes: Vec::new(),
            expires_at: None,
            recheck_every_secs: None,
        }
    }

    /// Attach a named fact for later hooks (recording, webhooks), e.g. the JWT claim
    /// `record = "true"`. Setting a name again replaces its value. The host accepts at most
    /// 32 attributes, names of 1-128 bytes and values up to 1024 bytes, without control
    /// characters; more is invalid output and the request is denied.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match self.attributes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((name, value)),
        }
        self
    }

    /// The value of the attribute `name`, if set.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// End the session at this Unix time (milliseconds), e.g. a token's `exp * 1000`.
    pub fn expires_at_ms(mut self, unix_ms: u64) -> Self {
        self.expires_at = Some(unix_ms);
        self
    }

    /// Ask the host to re-run `authenticate` for the live session every `secs` seconds.
    pub fn recheck_every_secs(mut self, secs: u32) -> Self {
        self.recheck_every_secs = Some(secs);
        self
    }
}

impl Action {
    /// `"publish"` or `"play"`, as used in configs and token claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// Logging through the host (`grants.log`, on by default). Lines are tagged with the plugin's
/// name and rate-limited by the host.
pub mod log {
    use crate::bindings::switchboard::plugin::log::{Level, log};

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Wall-clock time from the host (`grants.clock`, on by default).
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        crate::bindings::switchboard::plugin::clock::now_ms()
    }

    /// Seconds since the Unix epoch.
    pub fn now_secs() -> u64 {
        now_ms() / 1000
    }
}

/// Facts about the call in progress.
pub mod context {
    /// Whether this [`Plugin::authenticate`](crate::Plugin::authenticate) call re-checks a
    /// live session (periodic re-check, or after a plugin reload) rather than deciding on a
    /// new request: one-time credentials (nonces, signatures) pass re-checks without being
    /// "used" again.
    pub fn is_recheck() -> bool {
        crate::bindings::switchboard::plugin::context::is_recheck()
    }
}

/// Native signature verification by the host (`grants.crypto`, on by default).
pub mod crypto {
    pub use crate::bindings::switchboard::plugin::crypto::SignatureAlgorithm;

    /// Whether `signature` over `message` verifies under `public_key` (encodings per
    /// [`SignatureAlgorithm`]: PKCS#1 DER for RSA, SEC1 uncompressed point for P-256, 32 raw
    /// bytes for Ed25519).
    pub fn verify(
        algorithm: SignatureAlgorithm,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        crate::bindings::switchboard::plugin::crypto::verify(
            algorithm, public_key, message, signature,
        )
    }

    /// Whether the sr25519 `signature` (64 bytes) over `message` verifies under the 32-byte
    /// `public_key`, as Polkadot wallets sign (signing context `substrate`).
    pub fn verify_sr25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        crate::bindings::switchboard::plugin::crypto::verify_sr25519(public_key, message, signature)
    }

    /// The secp256k1 key (`x || y`, 64 bytes) that signed the 32-byte `prehash` with the
    /// 65-byte `r || s || v` `signature` (`v` 0, 1, 27 or 28; low `s` only).
    pub fn recover_secp256k1(prehash: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
        crate::bindings::switchboard::plugin::crypto::recover_secp256k1(prehash, signature)
    }

    /// Keccak-256 (Ethereum's hash) of `data`.
    pub fn keccak256(data: &[u8]) -> [u8; 32] {
        let digest = crate::bindings::switchboard::plugin::crypto::keccak256(data);
        let mut out = [0; 32];
        if digest.len() == 32 {
            out.copy_from_slice(&digest);
        }
        out
    }

    /// BLAKE2b of `data` with `out_len` bytes of output (1 to 64).
    pub fn blake2b(data: &[u8], out_len: u8) -> Vec<u8> {
        crate::bindings::switchboard::plugin::crypto::blake2b(data, out_len)
    }
}

/// The plugin's private key-value store in the host (`grants.kv = true`). Survives across
/// calls and reloads, not across server restarts.
pub mod kv {
    use crate::bindings::switchboard::plugin::kv as raw;
    pub use crate::bindings::switchboard::plugin::kv::KvError;
    use std::time::Duration;

    fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        raw::get(key)
    }

    /// Store a value that never expires.
    pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
        raw::set_with_ttl(key, value, None)
    }

    /// Store a value that disappears after `ttl`.
    pub fn set_with_ttl(key: &str, value: &[u8], ttl: Duration) -> Result<(), KvError> {
        raw::set_with_ttl(key, value, ttl_ms(Some(ttl)))
    }

    /// Atomically replace `expected` (`None` = key absent) with `value`; `Ok(false)` when the
    /// current value differs. The building block for replay protection and counters.
    pub fn compare_and_set(
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        raw::compare_and_set(key, expected, value, ttl_ms(ttl))
    }

    /// Remove a key; `Ok(true)` if it existed.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        raw::delete(key)
    }
}

/// HTTP to upstreams the operator declared in `config.toml` (`grants.http = ["name"]`).
pub mod http {
    pub use crate::bindings::switchboard::plugin::http::{HttpError, Request, Response};

    impl Request {
        /// A `GET` of `path` (and query) below the named upstream's URL.
        pub fn get(upstream: &str, path: &str) -> Self {
            Request {
                upstream: upstream.into(),
                method: "GET".into(),
                path: path.into(),
                headers: Vec::new(),
                body: None,
            }
        }

        /// A `POST` of `body` to `path` below the named upstream's URL.
        pub fn post(upstream: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
            Request {
                upstream: upstream.into(),
                method: "POST".into(),
                path: path.into(),
                headers: Vec::new(),
                body: Some(body.into()),
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }

        /// Send the request through the host.
        pub fn send(&self) -> Result<Response, HttpError> {
            crate::bindings::switchboard::plugin::http::fetch(self)
        }
    }

    impl Response {
        /// First header with this name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body parsed as JSON.
        pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
            serde_json::from_slice(&self.body).map_err(|e| e.to_string())
        }
    }
}

/// Register `$plugin` (a type implementing [`Plugin`]) as this component's implementation of
/// every hook. Use it exactly once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! register {
    ($plugin:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __SWITCHBOARD_SLOT: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::Registered for $plugin {
                fn with_slot<R>(
                    f: impl ::core::ops::FnOnce(
                        &::core::cell::RefCell<::core::option::Option<Self>>,
                    ) -> R,
                ) -> R {
                    __SWITCHBOARD_SLOT.with(f)
                }
            }

            // Exports only exist in the component; native builds (unit tests) skip them.
            #[cfg(target_family = "wasm")]
            type __SwitchboardExports = $crate::__private::Exports<$plugin>;
            #[cfg(target_family = "wasm")]
    $crate::__private::export!(__SwitchboardExports with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::cell::RefCell;
    use std::marker::PhantomData;

    pub use crate::bindings::__export_full as export;
    pub use wit_bindgen;

    /// Implemented by [`register!`]: where this instance keeps its configured plugin value.
    pub trait Registered: Plugin {
        fn with_slot<R>(f: impl FnOnce(&RefCell<Option<Self>>) -> R) -> R;
    }

    /// The component's exports, forwarding to the registered [`Plugin`].
    pub struct Exports<P>(PhantomData<P>);

    fn not_configured() -> Deny {
        Deny::unauthorized("plugin called before configure")
    }

    impl<P: Registered> lifecycle::Guest for Exports<P> {
        fn configure(config_json: String) -> Result<(), String> {
            let plugin = P::new(Config::from_json(config_json))?;
            P::with_slot(|slot| *slot.borrow_mut() = Some(plugin));
            Ok(())
        }
    }

    impl<P: Registered> authenticator::Guest for Exports<P> {
        fn authenticate(req: AuthRequest) -> Result<Identity, Deny> {
            P::with_slot(|slot| match &*slot.borrow() {
                Some(plugin) => plugin.authenticate(&req),
                None => Err(not_configured()),
            })
        }
    }

    impl<P: Registered> webhook_router::Guest for Exports<P> {
        fn route(event: WebhookEvent) -> WebhookDecision {
            P::with_slot(|slot| match &*slot.borrow() {
                Some(plugin) => plugin.route_webhook(&event),
                // Never called before configure; deliver rather than lose the event.
                None => WebhookDecision::as_is(),
            })
        }
    }

    impl<P: Registered> recorder::Guest for Exports<P> {
        fn publish_started(session: PublishSession) -> Option<RecordingPlan> {
            P::with_slot(|slot| match &*slot.borrow() {
                Some(plugin) => plugin.recording_plan(&session),
                None => None,
            })
        }

        fn publish_ended(room: String, session: String) {
            P::with_slot(|slot| {
                if let Some(plugin) = &*slot.borrow() {
                    plugin.publish_ended(&room, &session);
                }
            })
        }
    }

    impl<P: Registered> policy::Guest for Exports<P> {
        fn check(req: AuthRequest, identity: Identity) -> Result<(), Deny> {
            P::with_slot(|slot| match &*slot.borrow() {
                Some(plugin) => plugin.check_room(&req, &identity),
                None => Err(not_configured()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        keys: Vec<Key>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Key {
        alg: String,
        size: u32,
    }

    #[test]
    fn config_errors_name_the_key() {
        let err =
            Config::from_json(r#"{"keys":[{"alg":"HS256","size":1},{"alg":"x","size":"big"}]}"#)
                .parse::<Settings>()
                .unwrap_err();
        assert!(err.starts_with("keys[1].size: invalid type"), "{err}");

        let err = Config::from_json(r#"{"nope":1}"#)
            .parse::<Settings>()
            .unwrap_err();
        assert!(err.contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn builders_fill_fields() {
        let id = Identity::new("bob")
            .expires_at_ms(5)
            .recheck_every_secs(7)
            .with_attribute("record", "false")
            .with_attribute("tier", "gold")
            .with_attribute("record", "true");
        assert_eq!(id.subject, "bob");
        assert_eq!(
            id.attributes,
            vec![
                ("record".to_string(), "true".to_string()),
                ("tier".to_string(), "gold".to_string())
            ]
        );
        assert_eq!(id.attribute("record"), Some("true"));
        assert_eq!(id.attribute("nope"), None);
        assert_eq!(id.expires_at, Some(5));
        assert_eq!(id.recheck_every_secs, Some(7));
        assert_eq!(Deny::forbidden("no").kind, DenyKind::Forbidden);
        assert_eq!(Action::Publish.as_str(), "publish");
    }
}
