//! Room-name patterns: `*` matches any run of characters (including none), `?` exactly one,
//! everything else itself. `studio-*` matches `studio-1` and `studio-`, not `studio`.
//!
//! Kept deliberately small so operators can predict it; no character classes, no escapes.

/// Whether `text` matches `pattern` in full. Linear in practice: the classic two-pointer
/// algorithm backtracks only to the most recent `*`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it is currently absorbing up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if let Some((after_star, absorbed)) = star {
            pi = after_star;
            ti = absorbed + 1;
            star = Some((after_star, absorbed + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `pattern` contains wildcards (and so is not a plain room name).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_and_wildcards() {
        assert!(matches("lobby", "lobby"));
        assert!(!matches("lobby", "lobby2"));
        assert!(!matches("lobby", "lobb"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("studio-*", "studio-"));
        assert!(matches("studio-*", "studio-42"));
        assert!(!matches("studio-*", "studio"));
        assert!(matches("room-?", "room-a"));
        assert!(!matches("room-?", "room-ab"));
        assert!(matches("*-live-*", "eu-live-1"));
        assert!(!matches("*-live-*", "eu-dead-1"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("**", "x"));
        assert!(matches("é*", "été"));
    }

    #[test]
    fn backtracking_is_bounded() {
        let text = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*b", &text));
        assert!(matches("*a", &text));
    }
}
