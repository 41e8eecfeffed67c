//! Whole-word, case-insensitive matching of keywords and phrases in a line of text.
//!
//! Text is split into words: maximal runs of letters and digits (Unicode aware). Everything
//! else (spaces, punctuation, apostrophes, hyphens) separates words. A keyword is split the same
//! way and matches where its words appear consecutively in the text, compared case-insensitively.
//! So `cat` does not match `concatenate`, `cancel my plan` matches `Cancel, my plan!`, and
//! `don't` matches `don't` (and `don t`).
//!
//! No host calls here: unit tested natively.

/// One word of a text: its lowercase form and where it sits in the original (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    lower: String,
    start: usize,
    end: usize,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut current: Option<Word> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let w = current.get_or_insert_with(|| Word {
                lower: String::new(),
                start: i,
                end: i,
            });
            w.lower.extend(c.to_lowercase());
            w.end = i + c.len_utf8();
        } else if let Some(w) = current.take() {
            out.push(w);
        }
    }
    out.extend(current);
    out
}

/// A keyword as configured, with its words.
#[derive(Debug, Clone)]
struct Keyword {
    /// As the operator wrote it (trimmed): what alerts name.
    original: String,
    words: Vec<String>,
}

/// A keyword found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the keyword in [`Matcher::keywords`] order.
    pub keyword: usize,
    /// Byte range of the matched words in the text, from the first word's start to the last
    /// word's end.
    pub start: usize,
    pub end: usize,
}

/// The configured keywords, ready to match.
#[derive(Debug, Clone)]
pub struct Matcher {
    keywords: Vec<Keyword>,
}

impl Matcher {
    /// Prepares `keywords`. Duplicates (ignoring case and punctuation) are dropped, keeping
    /// the first spelling. Fails on an empty list or on an entry without a letter or digit.
    pub fn new(keywords: &[String]) -> Result<Self, String> {
        if keywords.is_empty() {
            return Err(
                "config key `keywords` is empty: list at least one word or phrase, like [\"refund\"]"
                    .to_owned(),
            );
        }
        let mut out: Vec<Keyword> = Vec::new();
        for k in keywords {
            let words: Vec<String> = words(k).into_iter().map(|w| w.lower).collect();
            if words.is_empty() {
                return Err(format!(
                    "config key `keywords` holds `{k}`, which has no letters or digits to match"
                ));
            }
            if !out.iter().any(|o| o.words == words) {
                out.push(Keyword {
                    original: k.trim().to_owned(),
                    words,
                });
            }
        }
        Ok(Self { keywords: out })
    }

    /// The keywords in match-index order, as configured.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|k| k.original.as_str())
    }

    /// The keyword with index `i`.
    pub fn keyword(&self, i: usize) -> &str {
        self.keywords.get(i).map_or("", |k| k.original.as_str())
    }

    /// The first occurrence of every keyword found in `text`, ordered by position.
    pub fn find(&self, text: &str) -> Vec<Match> {
        let words = words(text);
        let mut found: Vec<Match> = self
            .keywords
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let n = k.words.len();
                words
                    .windows(n)
                    .find(|w| w.iter().zip(&k.words).all(|(a, b)| a.lower == *b))
                    .map(|w| Match {
                        keyword: i,
                        start: w[0].start,
                        end: w[n - 1].end,
                    })
            })
            .collect();
        found.sort_by_key(|m| (m.start, m.keyword));
        found
    }
}

/// True when a cut between `outside` (dropped) and `inside` (kept) falls inside a word.
fn splits_word(outside: char, inside: Option<&char>) -> bool {
    !outside.is_whitespace() && inside.is_some_and(|c| !c.is_whitespace())
}

/// Up to `chars` characters of `text` either side of the byte range `start..end`, with `…`
/// where the text was cut (cuts fall between words), and line breaks turned into spaces.
pub fn context(text: &str, start: usize, end: usize, chars: usize) -> String {
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
    let (Some(before), Some(matched), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        // Not on character boundaries: cannot happen for ranges from `Matcher::find`.
        return text.to_owned();
    };
    let before_chars: Vec<char> = before.chars().collect();
    let before_cut = before_chars.len() > chars;
    let mut kept = &before_chars[before_chars.len().saturating_sub(chars)..];
    if before_cut
        && splits_word(
            before_chars[before_chars.len() - kept.len() - 1],
            kept.first(),
        )
    {
        // Drop the partial word the cut left at the start.
        let word_end = kept
            .iter()
            .position(|c| c.is_whitespace())
            .unwrap_or(kept.len());
        kept = &kept[word_end..];
    }
    let before: String = kept.iter().collect::<String>().trim_start().to_owned();

    let after_chars: Vec<char> = after.chars().collect();
    let after_cut = after_chars.len() > chars;
    let mut kept = &after_chars[..chars.min(after_chars.len())];
    if after_cut && splits_word(after_chars[kept.len()], kept.last()) {
        // Drop the partial word the cut left at the end.
        let word_start = kept.iter().rposition(|c| c.is_whitespace()).unwrap_or(0);
        kept = &kept[..word_start];
    }
    let after: String = kept.iter().collect::<String>().trim_end().to_owned();
    let mut out = String::new();
    if before_cut {
        out.push('…');
    }
    out.push_str(&before);
    out.push_str(matched);
    out.push_str(&after);
    if after_cut {
        out.push('…');
    }
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(words: &[&str]) -> Matcher {
        let list: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        match Matcher::new(&list) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn found(m: &Matcher, text: &str) -> Vec<String> {
        m.find(text)
            .iter()
            .map(|x| m.keyword(x.keyword).to_owned())
            .collect()
    }

    #[test]
    fn matches_whole_words_only() {
        let m = matcher(&["cat"]);
        assert!(found(&m, "please concatenate these").is_empty());
        assert!(found(&m, "cats and dogs").is_empty());
        assert_eq!(found(&m, "the cat sat"), ["cat"]);
        assert_eq!(found(&m, "cat"), ["cat"]);
        assert_eq!(found(&m, "(cat)."), ["cat"]);
    }

    #[test]
    fn matching_ignores_case_in_text_and_keyword() {
        let m = matcher(&["Refund"]);
        assert_eq!(found(&m, "I want a REFUND now"), ["Refund"]);
        let m = matcher(&["straße"]);
        assert_eq!(found(&m, "Die STRASSE"), Vec::<String>::new());
        assert_eq!(found(&m, "die Straße"), ["straße"]);
    }

    #[test]
    fn phrases_match_across_spaces_and_punctuation_but_not_inside_words() {
        let m = matcher(&["cancel my plan"]);
        assert_eq!(found(&m, "I'd like to cancel my plan."), ["cancel my plan"]);
        assert_eq!(found(&m, "Cancel,   my\nplan!"), ["cancel my plan"]);
        assert!(found(&m, "cancel my planning").is_empty());
        assert!(found(&m, "cancel the plan").is_empty());
    }

    #[test]
    fn reports_each_keyword_once_in_order_of_position() {
        let m = matcher(&["plan", "refund"]);
        let text = "refund the plan, refund the plan";
        let hits = m.find(text);
        assert_eq!(hits.len(), 2);
        assert_eq!(
            (
                m.keyword(hits[0].keyword),
                &text[hits[0].start..hits[0].end]
            ),
            ("refund", "refund")
        );
        assert_eq!((m.keyword(hits[1].keyword), hits[1].start), ("plan", 11));
    }

    #[test]
    fn empty_lists_and_wordless_keywords_are_refused_and_duplicates_dropped() {
        assert!(
            Matcher::new(&[])
                .unwrap_err()
                .contains("`keywords` is empty")
        );
        let err = Matcher::new(&["ok".into(), "?!".into()]).unwrap_err();
        assert!(err.contains("`?!`"), "{err}");
        let m = matcher(&["Refund", "refund!", "cancel"]);
        assert_eq!(m.keywords().collect::<Vec<_>>(), ["Refund", "cancel"]);
    }

    #[test]
    fn context_cuts_on_characters_and_marks_the_cuts() {
        let text = "one two three KEY four five six";
        let start = text.find("KEY").unwrap_or(0);
        assert_eq!(context(text, start, start + 3, 6), "…three KEY four…");
        assert_eq!(
            context(text, start, start + 3, 8),
            "…three KEY four…",
            "partial words dropped"
        );
        assert_eq!(context(text, start, start + 3, 2), "…KEY…");
        assert_eq!(context(text, start, start + 3, 100), text);
        let text = "ééé\nKEY";
        let start = text.find("KEY").unwrap_or(0);
        assert_eq!(context(text, start, start + 3, 2), "…KEY");
        assert_eq!(context(text, start, start + 3, 4), "ééé KEY");
    }
}
