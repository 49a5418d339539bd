//! Model-name patterns: `*` matches any run of characters (including none), every other
//! character matches itself. The one matcher used by the gateway's route table, the live
//! policy's rules, experiment scopes and the optimizer's reading of stored records, so that a
//! pattern means the same thing wherever it is written.
//!
//! There is no escape and no `?`: model ids never contain `*`, and a pattern without `*` is an
//! exact comparison.

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
///
/// Linear in `text` per `*`: the parts between stars are found leftmost first, which is enough
/// because the last part is anchored at the end of the text.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else { return false };
    // `rest` is what follows the first star: middle parts, then the last part after the last star.
    let (middle, last) = match rest.rsplit_once('*') {
        Some((middle, last)) => (Some(middle), last),
        None => (None, rest),
    };
    for part in middle.into_iter().flat_map(|middle| middle.split('*')) {
        match remaining.find(part) {
            Some(position) => remaining = &remaining[position + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Whether some text could match both patterns. Conservative: `true` unless the patterns are
/// shown disjoint (two exact names that differ, an exact name the other pattern does not match,
/// or literal beginnings or endings that contradict each other).
pub fn globs_may_overlap(left: &str, right: &str) -> bool {
    match (left.contains('*'), right.contains('*')) {
        (false, false) => left == right,
        (false, true) => glob_matches(right, left),
        (true, false) => glob_matches(left, right),
        (true, true) => {
            let (left_start, right_start) = (literal_start(left), literal_start(right));
            let (left_end, right_end) = (literal_end(left), literal_end(right));
            (left_start.starts_with(right_start) || right_start.starts_with(left_start))
                && (left_end.ends_with(right_end) || right_end.ends_with(left_end))
        }
    }
}

/// The literal text before the first `*`.
fn literal_start(pattern: &str) -> &str {
    pattern.split_once('*').map_or(pattern, |(start, _)| start)
}

/// The literal text after the last `*`.
fn literal_end(pattern: &str) -> &str {
    pattern.rsplit_once('*').map_or(pattern, |(_, end)| end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let table = [
            // From the gateway's route table.
            ("gpt-*", "gpt-4o", true),
            ("gpt-*", "gpt-", true),
            ("gpt-*", "o1", false),
            ("o1*", "o1-mini", true),
            ("*-mini", "gpt-4o-mini", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exact2", false),
            // From the live policy's scopes.
            ("gpt-4o*", "gpt-4o-mini", true),
            ("*", "", true),
            ("claude-*-4-5*", "claude-sonnet-4-5-20250929", true),
            ("claude-*-4-5", "claude-sonnet-4-5-20250929", false),
            ("o*", "o3", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("a*a", "a", false),
            // Edge cases of the two old copies.
            ("**", "", true),
            ("a**b", "ab", true),
            ("*b*", "abc", true),
            ("*b*", "ac", false),
            ("a*b*b", "ab", false),
            ("a*b*b", "abb", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn overlap_is_conservative() {
        let table = [
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o-mini", "gpt-4o*", true),
            ("gpt-4o*", "o3", false),
            ("gpt-*", "gpt-4o*", true),
            ("gpt-*", "claude-*", false),
            ("*-mini", "*-nano", false),
            ("*-mini", "gpt-*", true),
            ("*", "anything*", true),
        ];
        for (left, right, expected) in table {
            assert_eq!(globs_may_overlap(left, right), expected, "{left} ∩ {right}");
            assert_eq!(globs_may_overlap(right, left), expected, "{right} ∩ {left}");
        }
    }
}
