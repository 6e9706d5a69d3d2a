//! JWT auth for Switchboard.
//!
//! Verifies `Authorization: Bearer <jwt>` signed with HS256, RS256, ES256 or EdDSA, checks
//! `exp`/`nbf` (with leeway), `iss` and `aud`, then the room and role claims:
//!
//! ```json
//! { "sub": "alice", "exp": 1767225600, "aud": "switchboard",
//!   "room": ["studio-*", "lobby"], "role": ["publish", "play"] }
//! ```
//!
//! `room` holds room names or patterns (`*`, `?`); `role` holds `publish` and/or `play`.
//! The identity expires at `exp` (plus leeway), so the host ends the session when the token
//! does. Claims listed in `attribute_claims` (e.g. `["record"]`) are copied into the
//! identity's attributes for later hooks (recording, webhooks). See `docs/plugins.md` for
//! every config key.

mod keys;
mod token;

use keys::{Alg, Key, KeyConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_plugin_sdk::{Action, AuthRequest, Config, Deny, Identity, Plugin, glob};
use token::TokenError;

/// Most leeway an operator may configure: clock skew, not a grace period.
const MAX_LEEWAY_SECS: u64 = 3600;
/// The host's limits on identity attributes (`switchboard:plugin@0.2.0`, `identity`): more
/// would be invalid output, which the host answers with 503 instead of a clear denial.
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_NAME_BYTES: usize = 128;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Shorthand for one HS256 key.
    secret: Option<String>,
    #[serde(default)]
    keys: Vec<KeyConfig>,
    /// A JWKS document (JSON text or inline table).
    jwks: Option<Value>,
    /// Required `iss`.
    issuer: Option<String>,
    /// Accepted `aud` values; the token must carry at least one.
    #[serde(default)]
    audience: OneOrMany,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "yes")]
    require_exp: bool,
    #[serde(default = "default_room_claim")]
    room_claim: String,
    #[serde(default = "default_role_claim")]
    role_claim: String,
    /// Roles assumed when the token has no role claim (default: none, so the claim is needed).
    #[serde(default)]
    default_roles: Vec<Role>,
    /// Ask the host to re-verify live sessions this often.
    recheck_every_secs: Option<u32>,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    /// Claims copied into the identity's attributes when present (strings as they are,
    /// numbers and booleans as text, arrays and objects as JSON).
    #[serde(default)]
    attribute_claims: Vec<String>,
}

fn default_leeway() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn default_room_claim() -> String {
    "room".into()
}
fn default_role_claim() -> String {
    "role".into()
}
fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Role {
    Publish,
    Play,
}

pub struct JwtAuth {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Vec<String>,
    leeway_secs: u64,
    require_exp: bool,
    room_claim: String,
    role_claim: String,
    default_roles: Vec<Role>,
    recheck_every_secs: Option<u32>,
    max_token_bytes: usize,
    attribute_claims: Vec<String>,
}

impl JwtAuth {
    fn from_settings(s: Settings) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(secret) = s.secret {
            keys.push(Key {
                kid: None,
                alg: Alg::HS256,
                material: keys::hmac_secret(secret.into_bytes())
                    .map_err(|e| format!("secret: {e}"))?,
            });
        }
        for (i, key) in s.keys.into_iter().enumerate() {
            keys.push(key.load().map_err(|e| format!("keys[{i}]: {e}"))?);
        }
        if let Some(doc) = &s.jwks {
            keys.extend(keys::from_jwks(doc).map_err(|e| format!("jwks: {e}"))?);
        }
        if keys.is_empty() {
            return Err("no verification key: set `secret`, `keys` or `jwks`".into());
        }
        let mut kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        kids.sort_unstable();
        if let Some(w) = kids.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("key id `{}` is used by more than one key", w[0]));
        }
        if s.leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!(
                "leeway_secs: {} is over the maximum of {MAX_LEEWAY_SECS}",
                s.leeway_secs
            ));
        }
        if s.recheck_every_secs == Some(0) {
            return Err("recheck_every_secs: must be at least 1".into());
        }
        if s.room_claim.is_empty() || s.role_claim.is_empty() {
            return Err("room_claim and role_claim must not be empty".into());
        }
        if s.attribute_claims.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "attribute_claims: {} claims, at most {MAX_ATTRIBUTES}",
                s.attribute_claims.len()
            ));
        }
        for (i, claim) in s.attribute_claims.iter().enumerate() {
            if claim.is_empty()
                || claim.len() > MAX_ATTRIBUTE_NAME_BYTES
                || claim.chars().any(char::is_control)
            {
                return Err(format!(
                    "attribute_claims[{i}]: a claim name of 1-{MAX_ATTRIBUTE_NAME_BYTES} bytes \
                     without control characters"
                ));
            }
            if s.attribute_claims[..i].contains(claim) {
                return Err(format!("attribute_claims[{i}]: `{claim}` is listed twice"));
            }
        }
        Ok(JwtAuth {
            keys,
            issuer: s.issuer,
            audience: s.audience.into_vec(),
            leeway_secs: s.leeway_secs,
            require_exp: s.require_exp,
            room_claim: s.room_claim,
            role_claim: s.role_claim,
            default_roles: s.default_roles,
            recheck_every_secs: s.recheck_every_secs,
            max_token_bytes: s.max_token_bytes,
            attribute_claims: s.attribute_claims,
        })
    }

    /// The whole decision, with the current time passed in (Unix seconds).
    fn decide(&self, req: &AuthRequest, now: u64) -> Result<Identity, Deny> {
        let token = req
            .credential
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Deny::unauthorized("missing bearer token"))?;
        let claims = token::verify(token, &self.keys, self.max_token_bytes)
            .map_err(|e: TokenError| Deny::unauthorized(e.to_string()))?;
        let exp = self.check_time(&claims, now)?;
        self.check_issuer_audience(&claims)?;
        self.check_room_and_role(&claims, req)?;

        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("anonymous");
        let mut identity = Identity::new(subject);
        if let Some(exp) = exp {
            // Same leeway as admission, so a token accepted now is not "already expired".
            identity =
                identity.expires_at_ms(exp.saturating_add(self.leeway_secs).saturating_mul(1000));
        }
        if let Some(secs) = self.recheck_every_secs {
            identity = identity.recheck_every_secs(secs);
        }
        for name in &self.attribute_claims {
            if let Some(value) = attribute_value(&claims, name)? {
                identity = identity.with_attribute(name.as_str(), value);
            }
        }
        Ok(identity)
    }

    /// `exp` and `nbf`; returns `exp`.
    fn check_time(&self, claims: &Map<String, Value>, now: u64) -> Result<Option<u64>, Deny> {
        let exp = numeric_date(claims, "exp")?;
        match exp {
            None if self.require_exp => return Err(Deny::unauthorized("token has no `exp`")),
            Some(exp) if now >= exp.saturating_add(self.leeway_secs) => {
                return Err(Deny::unauthorized("token expired"));
            }
            _ => {}
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(Deny::unauthorized("token not valid yet (`nbf`)"));
        }
        Ok(exp)
    }

    fn check_issuer_audience(&self, claims: &Map<String, Value>) -> Result<(), Deny> {
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(Deny::unauthorized("wrong token issuer"));
        }
        if !self.audience.is_empty() {
            let aud = strings(claims.get("aud"));
            if !aud
                .iter()
                .any(|a| self.audience.iter().any(|want| want == a))
            {
                return Err(Deny::unauthorized("wrong token audience"));
            }
        }
        Ok(())
    }

    fn check_room_and_role(
        &self,
        claims: &Map<String, Value>,
        req: &AuthRequest,
    ) -> Result<(), Deny> {
        let rooms = strings(claims.get(&self.room_claim));
        if rooms.is_empty() {
            return Err(Deny::forbidden(format!(
                "token has no `{}` claim",
                self.room_claim
            )));
        }
        if !rooms
            .iter()
            .any(|pattern| glob::matches(pattern, &req.room))
        {
            return Err(Deny::forbidden(format!(
                "token is not valid for room `{}`",
                req.room
            )));
        }
        let roles: Vec<Role> = match claims.get(&self.role_claim) {
            None => self.default_roles.clone(),
            Some(v) => strings(Some(v))
                .iter()
                .filter_map(|r| match r.as_str() {
                    "publish" => Some(Role::Publish),
                    "play" => Some(Role::Play),
                    _ => None,
                })
                .collect(),
        };
        let needed = match req.action {
            Action::Publish => Role::Publish,
            Action::Play => Role::Play,
        };
        if !roles.contains(&needed) {
            return Err(Deny::forbidden(format!(
                "token does not allow {}",
                req.action.as_str()
            )));
        }
        Ok(())
    }
}

/// A JWT NumericDate (integer or fractional seconds); a negative or non-numeric value is an
/// invalid token.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Deny> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        {
            Some(t) => Ok(Some(t)),
            None => Err(Deny::unauthorized(format!("`{name}` is not a NumericDate"))),
        },
    }
}

/// The claim `name` as an attribute value: strings as they are, numbers and booleans as text,
/// arrays and objects as JSON; absent or `null` is no attribute. A value the host would refuse
/// makes the token invalid (401) rather than the plugin's output (503).
fn attribute_value(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, Deny> {
    let value = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(Deny::unauthorized(format!(
            "claim `{name}` is over {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Deny::unauthorized(format!(
            "claim `{name}` contains control characters"
        )));
    }
    Ok(Some(value))
}

/// A claim that may be a string or an array of strings.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

impl Plugin for JwtAuth {
    fn new(config: Config) -> Result<Self, String> {
        Self::from_settings(config.parse()?)
    }

    fn authenticate(&self, req: &AuthRequest) -> Result<Identity, Deny> {
        self.decide(req, switchboard_plugin_sdk::clock::now_secs())
    }
}

switchboard_plugin_sdk::register!(JwtAuth);

#[cfg(test)]
mod tests;
