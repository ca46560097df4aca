//! One ASCII folding for everything that must be ASCII: CloudWatch dimension values
//! (`crate::metrics`) and SNS subjects and SMS texts (`crate::notify`), so `San José` is
//! `San Jose` in both. Latin letters lose their diacritics, common symbols are spelled out,
//! any other non-ASCII character becomes `?`.

use std::borrow::Cow;

/// Latin letters with diacritics and common symbols, and their ASCII spelling.
const FOLDS: &[(&str, &str)] = &[
    ("àáâãäåāăą", "a"),
    ("ÀÁÂÃÄÅĀĂĄ", "A"),
    ("çćĉċč", "c"),
    ("ÇĆĈĊČ", "C"),
    ("ďđð", "d"),
    ("ĎĐÐ", "D"),
    ("èéêëēĕėęě", "e"),
    ("ÈÉÊËĒĔĖĘĚ", "E"),
    ("ĝğġģ", "g"),
    ("ĜĞĠĢ", "G"),
    ("ĥħ", "h"),
    ("ĤĦ", "H"),
    ("ìíîïĩīĭįı", "i"),
    ("ÌÍÎÏĨĪĬĮİ", "I"),
    ("ĵ", "j"),
    ("Ĵ", "J"),
    ("ķ", "k"),
    ("Ķ", "K"),
    ("ĺļľŀł", "l"),
    ("ĹĻĽĿŁ", "L"),
    ("ñńņň", "n"),
    ("ÑŃŅŇ", "N"),
    ("òóôõöøōŏő", "o"),
    ("ÒÓÔÕÖØŌŎŐ", "O"),
    ("ŕŗř", "r"),
    ("ŔŖŘ", "R"),
    ("śŝşš", "s"),
    ("ŚŜŞŠ", "S"),
    ("ţťŧ", "t"),
    ("ŢŤŦ", "T"),
    ("ùúûüũūŭůűų", "u"),
    ("ÙÚÛÜŨŪŬŮŰŲ", "U"),
    ("ŵ", "w"),
    ("Ŵ", "W"),
    ("ýÿŷ", "y"),
    ("ÝŸŶ", "Y"),
    ("źżž", "z"),
    ("ŹŻŽ", "Z"),
    ("ß", "ss"),
    ("æ", "ae"),
    ("Æ", "AE"),
    ("œ", "oe"),
    ("Œ", "OE"),
    ("þ", "th"),
    ("Þ", "Th"),
    ("\u{2018}\u{2019}", "'"),
    ("\u{201c}\u{201d}", "\""),
    ("\u{2013}\u{2014}\u{2212}", "-"),
    ("\u{2265}", ">="),
    ("\u{2264}", "<="),
    ("\u{2260}", "!="),
    ("\u{2026}", "..."),
    ("\u{b0}", " deg"),
];

/// The ASCII spelling of a non-ASCII character, if it has one.
pub fn fold_char(c: char) -> Option<&'static str> {
    FOLDS
        .iter()
        .find(|(from, _)| from.contains(c))
        .map(|(_, ascii)| *ascii)
}

/// `value` in ASCII. As a CloudWatch dimension value: skipping records with such values
/// would drop real data (99 of the 1,125 selected records of the KPL fixture are in San
/// José); sending them as they are would make CloudWatch reject the whole request.
pub fn fold_to_ascii(value: &str) -> Cow<'_, str> {
    if value.is_ascii() {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(fold_char(c).unwrap_or("?"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_letters_and_symbols_once_for_everyone() {
        assert_eq!(fold_to_ascii("San José"), "San Jose");
        assert_eq!(fold_to_ascii("Zürich ≥ 5 – 10°"), "Zurich >= 5 - 10 deg");
        assert_eq!(fold_to_ascii("東京"), "??");
        assert!(matches!(fold_to_ascii("Dallas"), Cow::Borrowed(_)));
    }
}
