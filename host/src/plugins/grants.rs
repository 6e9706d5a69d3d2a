//! Grants: which host capabilities a plugin may use, and the load-time check of its imports.
//!
//! Checked twice: here at load (a component importing an interface it is not granted, or one
//! the host does not provide, is refused with the grant to set) and by each import at call
//! time in `imports.rs` (defence in depth). WASI is linked with nothing granted, so its
//! imports need no grant.

use super::abi::{AbiVersion, detect};
use serde::{Deserialize, Serialize};

/// Host capabilities granted to the plugin. A component importing an interface it is not
/// granted fails to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrants {
    /// `switchboard:plugin/log` (rate-limited, tagged with the plugin name).
    pub log: bool,
    /// `switchboard:plugin/clock`.
    pub clock: bool,
    /// `switchboard:plugin/crypto`: native signature verification (pure computation).
    pub crypto: bool,
    /// `switchboard:plugin/kv`: a private in-memory key-value store with TTL and CAS.
    pub kv: bool,
    /// `switchboard:plugin/http`: the `[upstreams.<name>]` this plugin may call.
    pub http: Vec<String>,
}

impl Default for PluginGrants {
    fn default() -> Self {
        PluginGrants {
            log: true,
            clock: true,
            crypto: true,
            kv: false,
            http: Vec::new(),
        }
    }
}

/// Refuse imports the host does not provide for `abi` or `grants` does not allow, naming
/// them and the grant to set.
pub fn check_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    abi: AbiVersion,
    grants: &PluginGrants,
) -> Result<(), String> {
    for name in imports {
        if name.starts_with("wasi:") {
            // Linked with nothing granted.
            continue;
        }
        let Some((iface, version)) = detect::split(name) else {
            return Err(format!(
                "imports `{name}`, which Switchboard does not provide"
            ));
        };
        if version != abi.version() {
            return Err(format!(
                "imports `{name}`, but the component is built against {abi}"
            ));
        }
        let missing = match iface {
            "types" | "context" => None,
            "log" => (!grants.log).then_some("grants.log = true"),
            "clock" => (!grants.clock).then_some("grants.clock = true"),
            "crypto" => (!grants.crypto).then_some("grants.crypto = true"),
            "kv" => (!grants.kv).then_some("grants.kv = true"),
            // Importing `http` alone reaches nothing: every fetch names an upstream, which must
            // be in `grants.http` (checked per call). So a plugin whose HTTP use is optional
            // (chain-auth without chain lookups) loads without upstreams.
            "http" => None,
            _ => {
                return Err(format!(
                    "imports `{name}`, which Switchboard does not provide"
                ));
            }
        };
        if let Some(grant) = missing {
            return Err(format!(
                "imports `{name}` but is not granted it (set {grant})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_need_their_grant_and_the_component_version() {
        let grants = PluginGrants::default();
        let v2 = AbiVersion::V0_2_0;
        check_imports(
            [
                "switchboard:plugin/log@0.2.0",
                "switchboard:plugin/crypto@0.2.0",
                "wasi:random/random@0.2.12",
            ],
            v2,
            &grants,
        )
        .unwrap();
        assert_eq!(
            check_imports(["switchboard:plugin/kv@0.2.0"], v2, &grants).unwrap_err(),
            "imports `switchboard:plugin/kv@0.2.0` but is not granted it (set grants.kv = true)"
        );
        // `http` loads without upstreams; its calls then reach nothing.
        check_imports(["switchboard:plugin/http@0.2.0"], v2, &grants).unwrap();
        assert!(
            check_imports(["switchboard:plugin/log@0.1.0"], v2, &grants)
                .unwrap_err()
                .contains("built against switchboard:plugin@0.2.0")
        );
        assert!(
            check_imports(["acme:evil/shell@1.0.0"], v2, &grants)
                .unwrap_err()
                .contains("does not provide")
        );
        assert!(
            check_imports(["switchboard:plugin/files@0.2.0"], v2, &grants)
                .unwrap_err()
                .contains("does not provide")
        );
    }
}
