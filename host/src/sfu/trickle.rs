//! `application/trickle-ice-sdpfrag` (RFC 8840) as used by WHIP/WHEP PATCH requests.

/// What a client's PATCH body carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SdpFrag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `(mid, candidate-attribute-value)` pairs, e.g. `("0", "candidate:1 1 udp ...")`.
    pub candidates: Vec<(Option<String>, String)>,
    pub end_of_candidates: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragError {
    #[error("fragment is not UTF-8 text")]
    NotText,
    #[error("line {0}: {1}")]
    BadLine(usize, String),
    #[error("ice-ufrag and ice-pwd must be given together")]
    HalfCredentials,
}

impl SdpFrag {
    pub fn parse(body: &[u8]) -> Result<SdpFrag, FragError> {
        let text = std::str::from_utf8(body).map_err(|_| FragError::NotText)?;
        let mut frag = SdpFrag::default();
        let mut mid: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let Some((kind, value)) = line.split_once('=') else {
                return Err(FragError::BadLine(n, "expected `<type>=<value>`".into()));
            };
            match kind {
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match name {
                        "ice-ufrag" => frag.ufrag = Some(nonempty(n, name, arg)?),
                        "ice-pwd" => frag.pwd = Some(nonempty(n, name, arg)?),
                        "mid" => mid = Some(nonempty(n, name, arg)?),
                        "candidate" => {
                            if arg.split_whitespace().count() < 8 {
                                return Err(FragError::BadLine(
                                    n,
                                    "candidate needs at least 8 fields".into(),
                                ));
                            }
                            frag.candidates
                                .push((mid.clone(), format!("candidate:{arg}")));
                        }
                        "end-of-candidates" => frag.end_of_candidates = true,
                        // ice-options, group, etc.: accepted and ignored.
                        _ => {}
                    }
                }
                // m= lines scope the following mid; other session lines are tolerated.
                "m" | "c" | "v" | "o" | "s" | "t" => {}
                _ => {
                    return Err(FragError::BadLine(n, format!("unexpected `{kind}=` line")));
                }
            }
        }
        if frag.ufrag.is_some() != frag.pwd.is_some() {
            return Err(FragError::HalfCredentials);
        }
        Ok(frag)
    }
}

fn nonempty(line: usize, name: &str, value: &str) -> Result<String, FragError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FragError::BadLine(line, format!("empty {name}")));
    }
    Ok(v.to_owned())
}

/// The ICE credentials in an SDP (session level or first media section).
pub fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let find = |key: &str| {
        sdp.lines()
            .find_map(|l| l.trim_end().strip_prefix(key).map(str::to_owned))
    };
    Some((find("a=ice-ufrag:")?, find("a=ice-pwd:")?))
}

/// Rewrite an offer for an ICE restart: new credentials, no stale candidates.
pub fn restart_offer(sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The answer fragment for an ICE restart: our new credentials and candidates.
pub fn answer_fragment(local_sdp: &str) -> String {
    let mut out = String::new();
    let mut mid_written = false;
    for line in local_sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("a=ice-ufrag:") || line.starts_with("a=ice-pwd:") {
            if !out.contains(line) {
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else if line.starts_with("a=mid:") && !mid_written {
            // Candidates are bundled on the first media section.
            mid_written = true;
            out.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n");
            out.push_str(line);
            out.push_str("\r\n");
        } else if line.starts_with("a=candidate:") && mid_written && !out.contains(line) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trickle_fragment() {
        let body = b"a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n";
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.candidates.len(), 1);
        assert_eq!(f.candidates[0].0.as_deref(), Some("0"));
        assert!(f.candidates[0].1.starts_with("candidate:1387637174 1 udp"));
        assert!(f.end_of_candidates);
    }

    #[test]
    fn rejects_garbage() {
        assert!(SdpFrag::parse(b"hello world").is_err());
        assert!(SdpFrag::parse(b"a=candidate:1 2 3").is_err());
        assert_eq!(
            SdpFrag::parse(b"a=ice-ufrag:abc\r\n"),
            Err(FragError::HalfCredentials)
        );
        assert!(SdpFrag::parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn restart_offer_swaps_credentials() {
        let sdp = "v=0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n";
        let r = restart_offer(sdp, "new", "newpwd");
        assert!(r.contains("a=ice-ufrag:new\r\n"));
        assert!(r.contains("a=ice-pwd:newpwd\r\n"));
        assert!(!r.contains("candidate"));
        assert_eq!(
            ice_credentials(&r),
            Some(("new".to_string(), "newpwd".to_string()))
        );
    }
}
