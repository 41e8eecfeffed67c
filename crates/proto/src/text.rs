//! Text cut to a bound in bytes, never inside a character: the one truncation helper of the
//! workspace, for log lines, error messages and records that carry text from outside.

use std::borrow::Cow;

/// The marker [`truncated`] appends to text it cut.
pub const CUT_MARKER: &str = "...";

/// The longest prefix of `s` at most `max` bytes long that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// `s` cut to at most `max` bytes (at a character boundary) with `marker` appended when it
/// was cut; borrowed when it fits.
pub fn clipped<'a>(s: &'a str, max: usize, marker: &str) -> Cow<'a, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(max + marker.len());
    out.push_str(prefix(s, max));
    out.push_str(marker);
    Cow::Owned(out)
}

/// At most `max` bytes of `s` (cut at a character boundary, [`CUT_MARKER`] appended when
/// cut): for logging text that came from the network without logging all of it.
pub fn truncated(s: &str, max: usize) -> Cow<'_, str> {
    clipped(s, max, CUT_MARKER)
}

/// Cuts `s` in place to at most `max` bytes at a character boundary; true when it was cut.
pub fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let end = prefix(s, max).len();
    s.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_never_splits_a_character() {
        assert_eq!(prefix("abc", 5), "abc");
        assert_eq!(prefix("abc", 2), "ab");
        assert_eq!(prefix("ééé", 3), "é");
        assert_eq!(prefix("ééé", 1), "");
        assert_eq!(prefix("", 0), "");
    }

    #[test]
    fn truncated_cuts_at_a_character_boundary() {
        assert_eq!(truncated("abc", 5), "abc");
        assert_eq!(truncated("abc", 3), "abc");
        assert_eq!(truncated("abcdef", 3), "abc...");
        assert_eq!(truncated("ééé", 3), "é...");
        assert!(matches!(truncated("abc", 3), Cow::Borrowed(_)));
    }

    #[test]
    fn clipped_appends_the_given_marker_only_when_cut() {
        assert_eq!(clipped("abcdef", 4, "…"), "abcd…");
        assert_eq!(clipped("abcd", 4, "…"), "abcd");
    }

    #[test]
    fn truncate_in_place_reports_whether_it_cut() {
        let mut s = String::from("aéb");
        assert!(!truncate(&mut s, 4));
        assert_eq!(s, "aéb");
        assert!(truncate(&mut s, 2));
        assert_eq!(s, "a");
    }

    proptest::proptest! {
        #[test]
        fn a_cut_is_a_bounded_prefix(s in ".{0,40}", max in 0usize..64) {
            let p = prefix(&s, max);
            proptest::prop_assert!(p.len() <= max);
            proptest::prop_assert!(s.starts_with(p));
            // Longest: one more character would pass the bound.
            if let Some(c) = s[p.len()..].chars().next() {
                proptest::prop_assert!(p.len() + c.len_utf8() > max);
            }
        }
    }
}
