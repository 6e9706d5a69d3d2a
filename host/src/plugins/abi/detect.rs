//! Which `switchboard:plugin` version a component was built against.
//!
//! Every interface name carries its version (`switchboard:plugin/lifecycle@0.2.0`), so the
//! names of a component's imports and exports tell: they must all name one version, and it
//! must be one this host provides ([`AbiVersion::ALL`]).

use super::{AbiVersion, PACKAGE};

/// Why no version could be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "is not a Switchboard plugin: it neither imports nor exports a {PACKAGE} interface \
         (this host provides {})",
        provided()
    )]
    NoInterface,
    #[error(
        "is built against {PACKAGE}@{found}, which this host does not provide (it provides {})",
        provided()
    )]
    Unsupported { found: String },
    #[error("mixes {PACKAGE} versions {}; a component is built against one", .0.join(" and "))]
    Mixed(Vec<String>),
}

/// The versions this host provides, for messages: `switchboard:plugin@0.1.0 and @0.2.0`.
pub fn provided() -> String {
    let versions: Vec<String> = AbiVersion::ALL
        .iter()
        .map(|v| format!("@{}", v.version()))
        .collect();
    match versions.split_last() {
        Some((last, [])) => format!("{PACKAGE}{last}"),
        Some((last, rest)) => format!("{PACKAGE}{} and {last}", rest.join(", ")),
        None => PACKAGE.to_string(),
    }
}

/// `switchboard:plugin/<interface>@<version>` as `(interface, version)`; the version is empty
/// when the name has none. `None` for names of other packages.
pub fn split(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// The one version named by `names` (a component's import and export names).
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<AbiVersion, DetectError> {
    let mut versions: Vec<&str> = names
        .into_iter()
        .filter_map(split)
        .map(|(_, version)| version)
        .collect();
    versions.sort_unstable();
    versions.dedup();
    match versions.as_slice() {
        [] => Err(DetectError::NoInterface),
        [one] => AbiVersion::from_version(one).ok_or_else(|| DetectError::Unsupported {
            found: if one.is_empty() {
                "(no version)".into()
            } else {
                one.to_string()
            },
        }),
        many => Err(DetectError::Mixed(
            many.iter().map(|v| format!("@{v}")).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_provided_version_binds() {
        let v1 = [
            "switchboard:plugin/log@0.1.0",
            "wasi:random/random@0.2.12",
            "switchboard:plugin/lifecycle@0.1.0",
            "switchboard:plugin/authenticator@0.1.0",
        ];
        assert_eq!(detect(v1), Ok(AbiVersion::V0_1_0));
        assert_eq!(
            detect(["switchboard:plugin/lifecycle@0.2.0"]),
            Ok(AbiVersion::V0_2_0)
        );
    }

    #[test]
    fn anything_else_names_what_this_host_provides() {
        assert_eq!(
            detect(["wasi:cli/run@0.2.0"]).unwrap_err().to_string(),
            "is not a Switchboard plugin: it neither imports nor exports a switchboard:plugin \
             interface (this host provides switchboard:plugin@0.1.0 and @0.2.0)"
        );
        assert_eq!(
            detect(["switchboard:plugin/lifecycle@0.9.0"])
                .unwrap_err()
                .to_string(),
            "is built against switchboard:plugin@0.9.0, which this host does not provide \
             (it provides switchboard:plugin@0.1.0 and @0.2.0)"
        );
        assert!(matches!(
            detect(["switchboard:plugin/lifecycle"]),
            Err(DetectError::Unsupported { .. })
        ));
        assert_eq!(
            detect([
                "switchboard:plugin/log@0.1.0",
                "switchboard:plugin/lifecycle@0.2.0"
            ])
            .unwrap_err()
            .to_string(),
            "mixes switchboard:plugin versions @0.1.0 and @0.2.0; a component is built against one"
        );
        // Another package that merely starts with the same letters is not ours.
        assert_eq!(
            detect(["switchboard:plugins/x@0.1.0"]),
            Err(DetectError::NoInterface)
        );
    }
}
