//! Object keys: a recorder plugin's key template filled in for one file.

use std::time::SystemTime;

/// What a key may name about its file.
#[derive(Debug, Clone)]
pub struct KeyParts<'a> {
    pub room: &'a str,
    pub subject: &'a str,
    pub session: &'a str,
    /// When the recording started (`{date}` `YYYY-MM-DD`, `{time}` `HHMMSS`, UTC).
    pub started_at: SystemTime,
    /// `{segment}`: 1-based, five digits.
    pub segment: u32,
    /// `{ext}`: `webm`, `ivf`, `ogg`, `h264`.
    pub ext: &'a str,
}

/// `prefix` + `template` with its placeholders filled in. A value's `/` stays a path separator
/// only where the template puts one: inside values it becomes `_`, as do control characters,
/// so a subject like `a/../b` cannot climb out of its place.
pub fn object_key(prefix: &str, template: &str, parts: &KeyParts<'_>) -> String {
    let stamp = humantime::format_rfc3339_seconds(parts.started_at).to_string();
    let date = &stamp[..10];
    let time: String = stamp[11..19].chars().filter(|c| *c != ':').collect();
    let segment = format!("{:05}", parts.segment);
    let clean = |v: &str| -> String {
        v.chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .collect()
    };
    let mut key = template.to_owned();
    for (name, value) in [
        ("{room}", clean(parts.room)),
        ("{subject}", clean(parts.subject)),
        ("{session}", clean(parts.session)),
        ("{date}", date.to_owned()),
        ("{time}", time),
        ("{segment}", segment),
        ("{ext}", clean(parts.ext)),
    ] {
        key = key.replace(name, &value);
    }
    format!("{prefix}{}", key.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn placeholders_are_filled_and_values_cannot_add_path_segments() {
        // 2026-12-02T07:19:20Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_195_960);
        let parts = KeyParts {
            room: "studio",
            subject: "a/../b",
            session: "s1",
            started_at: at,
            segment: 3,
            ext: "webm",
        };
        assert_eq!(
            object_key(
                "live/",
                "{room}/{date}/{time}-{subject}/{segment}.{ext}",
                &parts
            ),
            "live/studio/2026-12-02/071920-a_.._b/00003.webm"
        );
        assert_eq!(
            object_key("", "/{session}-{segment}.{ext}", &parts),
            "s1-00003.webm"
        );
    }
}
