//! Every xtask failure is one line, `xtask: error: <context>: <cause>`, and a non-zero exit —
//! never anyhow's `Error:` block with `Caused by:` and a backtrace, even with
//! `RUST_BACKTRACE=1` set (as it is on CI machines).

use std::process::{Command, Output};

fn xtask(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .envs(envs.iter().copied())
        .output()
        .expect("run the xtask binary")
}

/// The stderr's last line, after checking no multi-line error report came with it.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "must fail: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for block in ["Caused by", "Stack backtrace", "backtrace", "Error: "] {
        assert!(!stderr.contains(block), "no `{block}` in:\n{stderr}");
    }
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("xtask: error: "), "last line: {last:?}");
    assert_eq!(
        stderr.matches("xtask: error:").count(),
        1,
        "exactly one error line in:\n{stderr}"
    );
    last
}

#[test]
fn an_unknown_command_is_one_error_line_after_the_usage() {
    let out = xtask(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: cargo xtask"));
    assert_eq!(
        error_line(&out),
        "xtask: error: unknown command `frobnicate`"
    );
}

#[test]
fn a_failure_with_causes_names_context_and_cause_on_one_line() {
    // A target directory that is a file: the smoke test cannot create its log folder there.
    let file = std::env::temp_dir().join(format!("xtask-errors-{}", std::process::id()));
    std::fs::write(&file, "not a directory").unwrap();
    let out = xtask(&["smoke"], &[("CARGO_TARGET_DIR", file.to_str().unwrap())]);
    let _ = std::fs::remove_file(&file);
    let line = error_line(&out);
    assert!(
        line.contains("cannot create") && line.contains("xtask-smoke") && line.contains(": "),
        "{line}"
    );
    assert!(line.to_lowercase().contains("not a directory"), "{line}");
}
