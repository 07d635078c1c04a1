//! What a body that fits the CSDL may still not carry through graphgate: explicit `null`s,
//! control characters, and email parameters that are not exactly one address. Also how a
//! caller-supplied member name may appear in an error. Graph itself (and so the emulator)
//! is not held to these rules; the gateway is, so that a policy decides on plain values.

use super::{Prop, SchemaError};

/// Shown instead of a member name that does not look like a property name.
const NOT_SHOWN: &str = "(a name that is not a property name, not shown)";

/// A caller-supplied member name as an error may show it: as is if it looks like a
/// property name, otherwise a placeholder. A key is caller-supplied text, and a client that
/// put a secret where a name belongs must not get it echoed back (and logged).
pub(crate) fn shown_name(path: &str) -> String {
    let plausible = path.len() <= 128
        && path.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 64
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_@#-".contains(&b))
        });
    if plausible {
        path.to_owned()
    } else {
        NOT_SHOWN.to_owned()
    }
}

/// Checks one string parameter's value.
pub(super) fn string(prop: &Prop, value: &str, path: &str) -> Result<(), SchemaError> {
    if value.chars().any(forbidden_char) {
        return Err(SchemaError::ControlCharacter(path.to_owned()));
    }
    if prop.address && !is_address(value) {
        return Err(SchemaError::NotAnAddress(path.to_owned()));
    }
    Ok(())
}

/// Characters no string parameter may carry: C0 and C1 controls (NUL, CR, LF, tab...),
/// the Unicode line and paragraph separators, and the bidirectional embedding, override
/// and isolate controls (which make text read differently from what it is).
pub(crate) fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Free text a person writes and another reads back (a request's reason; an approval's
/// review reason): 1 to `max_chars` characters, none of them a control, line-separator or
/// bidirectional control character (as for every string parameter) or [`invisible_char`],
/// and at least one visible (not only spaces). The one check for such text, wherever it
/// arrives (header or body field).
pub fn is_readable_text(text: &str, max_chars: usize) -> bool {
    text.chars().count() <= max_chars
        && !text.chars().any(|c| forbidden_char(c) || invisible_char(c))
        && text.chars().any(|c| !c.is_whitespace())
}

/// Characters that show nothing yet are not spaces: Unicode format characters (category
/// Cf: the bidirectional marks LRM, RLM and ALM, zero-width space, joiner and non-joiner,
/// word joiner, the byte-order mark, invisible operators, tag characters...), variation
/// selectors, the combining grapheme joiner, and the fillers Hangul and Braille draw as
/// blanks. A reason made of them would read as empty, or differently from what it is.
pub fn invisible_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{034f}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{ffa0}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// One email address, `local@domain`: exactly one `@`; a local part of dot-separated
/// RFC 5322 atoms (letters, digits and ``!#$%&'*+-/=?^_`{|}~``; no spaces, commas, quotes
/// or angle brackets); a domain of at least two dot-separated labels of letters, digits and
/// inner hyphens, without a trailing dot. ASCII only, as Entra user principal names are.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254 && is_local_part(local) && is_domain(domain)
}

fn is_local_part(local: &str) -> bool {
    const ATEXT_SYMBOLS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || ATEXT_SYMBOLS.contains(&b))
        })
}

fn is_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_exactly() {
        for ok in [
            "room1@rooms.contoso.com",
            "Room.One+cal@ROOMS.contoso.com",
            "o'brien@contoso.co.uk",
            "a@b.c",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "ceo@evil.example\u{0}@rooms.contoso.com",
            "ceo@evil.example@rooms.contoso.com",
            "ceo@evil.example,room@rooms.contoso.com",
            "a,b@rooms.contoso.com",
            "\"ceo\"@rooms.contoso.com",
            "ceo @rooms.contoso.com",
            "Room <room@rooms.contoso.com>",
            "room@rooms.contoso.com.",
            "room@.rooms.contoso.com",
            "room@rooms..contoso.com",
            "room@localhost",
            "room@-rooms.contoso.com",
            "room.@rooms.contoso.com",
            ".room@rooms.contoso.com",
            "@rooms.contoso.com",
            "room@",
            "room",
            "",
            "rööm@rooms.contoso.com",
            "room@rооms.contoso.com", // Cyrillic o
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
        assert!(!is_address(&format!("{}@contoso.com", "a".repeat(65))));
        assert!(!is_address(&format!("a@{}.com", "b".repeat(64))));
    }

    #[test]
    fn control_line_and_bidi_characters_are_forbidden() {
        for c in [
            '\0', '\r', '\n', '\t', '\u{7f}', '\u{85}', '\u{2028}', '\u{202e}', '\u{2066}',
        ] {
            assert!(forbidden_char(c), "{c:?}");
        }
        for c in ['a', ' ', ',', '@', 'é', '\u{200d}'] {
            assert!(!forbidden_char(c), "{c:?}");
        }
    }

    #[test]
    fn readable_text_refuses_format_and_invisible_characters_and_needs_something_visible() {
        for ok in [
            "CHG-1234",
            "Raum f\u{fc}r Vorstand",
            "\u{5e9}\u{5dc}\u{5d5}\u{5dd} ok",
            "a b",
        ] {
            assert!(is_readable_text(ok, 1024), "{ok:?}");
        }
        for bad in [
            "",
            "   ",
            "\u{a0}\u{2003}",
            "\u{200e}",                 // LRM
            "CHG-1\u{200f}",            // RLM
            "\u{61c}CHG-1",             // ALM
            "\u{feff}CHG-1",            // BOM
            "CHG\u{200b}-1",            // zero-width space
            "\u{200c}\u{200d}\u{2060}", // ZWNJ, ZWJ, word joiner
            "ok\u{e0041}\u{e0042}",     // tag characters
            "\u{3164}\u{3164}",         // Hangul filler
            "\u{2800}",                 // Braille blank
            "a\u{fe0f}",                // variation selector
            "\u{2064}",                 // invisible plus
            "a\u{202e}b",               // bidi override (a control already)
            "tab\there",
        ] {
            assert!(!is_readable_text(bad, 1024), "{bad:?}");
        }
        assert!(is_readable_text(&"r".repeat(8), 8));
        assert!(!is_readable_text(&"r".repeat(9), 8));
    }

    #[test]
    fn names_are_shown_only_when_they_look_like_names() {
        assert_eq!(
            shown_name("deviceAccount.@odata.type"),
            "deviceAccount.@odata.type"
        );
        for hidden in ["Sup3r Secret!", "a\"b", "x\ny", "", "a..b", &"k".repeat(65)] {
            assert_eq!(shown_name(hidden), NOT_SHOWN, "{hidden:?}");
        }
    }
}
