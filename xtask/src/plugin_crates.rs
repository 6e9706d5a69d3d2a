//! Which members of the plugins workspace are plugins, read from `cargo metadata`.
//!
//! A plugin is a member whose library is a `cdylib` (the core module that becomes a component).
//! A member that is a shared library — the SDK, helper crates — says so in its manifest:
//!
//! ```toml
//! [package.metadata.switchboard]
//! kind = "library"
//! ```
//!
//! Anything else is a mistake that used to be skipped in silence (a plugin whose manifest lost
//! its `crate-type` never reached `target/plugins/`), so it stops the build with the crate, its
//! manifest and both ways to fix it.

use anyhow::{Result, bail};
use serde_json::Value;
use std::path::Path;

/// The `kind` a member declares under `[package.metadata.switchboard]`.
const LIBRARY_KIND: &str = "library";
const PLUGIN_KIND: &str = "plugin";

/// The plugin members of the workspace described by `metadata` (the JSON of
/// `cargo metadata --format-version 1 --no-deps`), sorted by name. `root` is the repository
/// root, used to print manifests as short relative paths.
pub fn plugin_names(metadata: &Value, root: &Path) -> Result<Vec<String>> {
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut plugins = Vec::new();
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let id = package["id"].as_str().unwrap_or_default();
        if !members.is_empty() && !members.contains(&id) {
            continue;
        }
        let name = package["name"].as_str().unwrap_or("<unnamed>");
        let manifest = package["manifest_path"].as_str().unwrap_or("Cargo.toml");
        let manifest = Path::new(manifest)
            .strip_prefix(root)
            .unwrap_or(Path::new(manifest))
            .display()
            .to_string();
        match classify(package) {
            Ok(Kind::Plugin) => plugins.push(name.to_owned()),
            Ok(Kind::Library) => {}
            Err(problem) => problems.push(problem.describe(name, &manifest)),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    plugins.sort();
    Ok(plugins)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Plugin,
    Library,
}

#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// Neither a cdylib nor declared a library.
    NotACdylib,
    /// Declared a library but builds a cdylib.
    LibraryWithCdylib,
    /// `kind` holds something we do not know.
    UnknownKind(String),
}

impl Problem {
    fn describe(&self, name: &str, manifest: &str) -> String {
        match self {
            Problem::NotACdylib => format!(
                "plugins workspace member `{name}` ({manifest}) builds no cdylib, so it would \
                 produce no plugin: add `crate-type = [\"cdylib\"]` under `[lib]` in {manifest}, \
                 or, if it is a shared library, add `[package.metadata.switchboard]` with \
                 `kind = \"{LIBRARY_KIND}\"`"
            ),
            Problem::LibraryWithCdylib => format!(
                "plugins workspace member `{name}` ({manifest}) says `kind = \"{LIBRARY_KIND}\"` \
                 but builds a cdylib: remove one of the two from {manifest}"
            ),
            Problem::UnknownKind(kind) => format!(
                "plugins workspace member `{name}` ({manifest}) has \
                 `[package.metadata.switchboard] kind = {kind}`; expected \"{PLUGIN_KIND}\" or \
                 \"{LIBRARY_KIND}\""
            ),
        }
    }
}

fn classify(package: &Value) -> Result<Kind, Problem> {
    let cdylib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|target| target["crate_types"].as_array().into_iter().flatten())
        .any(|crate_type| crate_type == "cdylib");
    let declared = &package["metadata"]["switchboard"]["kind"];
    match (declared.as_str(), cdylib) {
        (None, _) if !declared.is_null() => Err(Problem::UnknownKind(declared.to_string())),
        (None, true) | (Some(PLUGIN_KIND), true) => Ok(Kind::Plugin),
        (Some(LIBRARY_KIND), false) => Ok(Kind::Library),
        (Some(LIBRARY_KIND), true) => Err(Problem::LibraryWithCdylib),
        (None, false) | (Some(PLUGIN_KIND), false) => Err(Problem::NotACdylib),
        (Some(other), _) => Err(Problem::UnknownKind(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A package as `cargo metadata` prints it (only the fields we read).
    fn package(name: &str, dir: &str, crate_types: &[&str], metadata: Value) -> Value {
        json!({
            "id": format!("path+file:///repo/{dir}#{name}@0.1.0"),
            "name": name,
            "manifest_path": format!("/repo/{dir}/Cargo.toml"),
            "targets": [{ "name": name.replace('-', "_"), "kind": crate_types,
                          "crate_types": crate_types }],
            "metadata": metadata,
        })
    }

    fn workspace(packages: Vec<Value>) -> Value {
        let members: Vec<Value> = packages.iter().map(|p| p["id"].clone()).collect();
        json!({ "packages": packages, "workspace_members": members })
    }

    fn names(packages: Vec<Value>) -> Result<Vec<String>> {
        plugin_names(&workspace(packages), Path::new("/repo"))
    }

    #[test]
    fn cdylibs_are_plugins_and_declared_libraries_are_skipped() {
        let sdk = package(
            "switchboard-plugin-sdk",
            "plugin-sdk",
            &["lib"],
            json!({ "switchboard": { "kind": "library" } }),
        );
        let got = names(vec![
            package(
                "static-token",
                "plugins/static-token",
                &["cdylib", "rlib"],
                Value::Null,
            ),
            sdk,
            package("auth-jwt", "plugins/auth-jwt", &["cdylib"], Value::Null),
            package(
                "explicit",
                "plugins/explicit",
                &["cdylib"],
                json!({ "switchboard": { "kind": "plugin" } }),
            ),
        ])
        .unwrap();
        assert_eq!(got, ["auth-jwt", "explicit", "static-token"]);
    }

    #[test]
    fn a_member_without_cdylib_is_an_error_naming_crate_manifest_and_fixes() {
        let err = names(vec![
            package("auth-jwt", "plugins/auth-jwt", &["cdylib"], Value::Null),
            package("forgot", "plugins/forgot", &["lib"], Value::Null),
            package(
                "helpers",
                "plugins/helpers",
                &["rlib"],
                json!({ "other-tool": {} }),
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(!err.contains('\n'), "one line: {err}");
        for needle in [
            "`forgot` (plugins/forgot/Cargo.toml)",
            "`helpers` (plugins/helpers/Cargo.toml)",
            "crate-type = [\"cdylib\"]",
            "kind = \"library\"",
        ] {
            assert!(err.contains(needle), "{needle:?} in {err}");
        }
        assert!(!err.contains("auth-jwt"), "{err}");
    }

    #[test]
    fn contradictory_or_unknown_kinds_are_errors() {
        let err = names(vec![package(
            "both",
            "plugins/both",
            &["cdylib"],
            json!({ "switchboard": { "kind": "library" } }),
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`both`") && err.contains("builds a cdylib"),
            "{err}"
        );

        for kind in [json!("lib"), json!(3)] {
            let err = names(vec![package(
                "odd",
                "plugins/odd",
                &["cdylib"],
                json!({ "switchboard": { "kind": kind } }),
            )])
            .unwrap_err()
            .to_string();
            assert!(err.contains("`odd`") && err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn only_workspace_members_are_classified() {
        let mut meta = workspace(vec![package(
            "auth-jwt",
            "plugins/auth-jwt",
            &["cdylib"],
            Value::Null,
        )]);
        // A path dependency listed in `packages` without being a member.
        meta["packages"].as_array_mut().unwrap().push(package(
            "dep",
            "elsewhere/dep",
            &["lib"],
            Value::Null,
        ));
        assert_eq!(
            plugin_names(&meta, Path::new("/repo")).unwrap(),
            ["auth-jwt"]
        );
    }
}
