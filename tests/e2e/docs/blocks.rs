//! The fenced code blocks of a Markdown page and what their info strings say about running
//! them: ```` ```sh ```` runs; attributes after the language change how (see the book's
//! contributing page, "Documented commands run").

use std::collections::BTreeMap;

/// Languages whose blocks are shell commands, run unless marked `norun`.
pub const SHELLS: [&str; 4] = ["sh", "bash", "shell", "console"];

/// One fenced block.
#[derive(Debug)]
pub struct Block {
    /// 1-based line of its opening fence.
    pub line: usize,
    /// The language (first word of the info string).
    pub lang: String,
    /// `key=value` (value in double quotes if it has spaces) and bare `key` attributes.
    pub attrs: BTreeMap<String, String>,
    /// Its text, the fence's indentation removed.
    pub code: String,
}

impl Block {
    pub fn is_shell(&self) -> bool {
        SHELLS.contains(&self.lang.as_str())
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

/// A directive between blocks: an HTML comment `<!-- docs-test: WORDS -->`, invisible in
/// the rendered page (`stop`: stop the page's background commands here, as Ctrl-C would).
#[derive(Debug)]
pub enum Item {
    Block(Block),
    Directive { line: usize, words: String },
}

/// The page's blocks and directives in order; `Err` names a fence without a language or an
/// unclosed or malformed one.
pub fn parse(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(words) = trimmed
            .strip_prefix("<!-- docs-test:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            items.push(Item::Directive {
                line: n + 1,
                words: words.trim().to_owned(),
            });
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let (lang, attrs) = info_string(info).map_err(|e| format!("line {}: {e}", n + 1))?;
        if lang.is_empty() {
            return Err(format!(
                "line {}: a fence without a language (say `sh`, `text`, `yaml`...)",
                n + 1
            ));
        }
        let mut code = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            code.push_str(l.get(indent..).unwrap_or(l.trim_start()));
            code.push('\n');
        }
        if !closed {
            return Err(format!("line {}: the fence is never closed", n + 1));
        }
        items.push(Item::Block(Block {
            line: n + 1,
            lang,
            attrs,
            code,
        }));
    }
    Ok(items)
}

/// `sh norun="needs a cluster"` → ("sh", {norun: "needs a cluster"}). Words are separated
/// by spaces or commas; a value with spaces is in double quotes.
fn info_string(info: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in info.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' | ',' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err(format!("an unclosed quote in {info:?}"));
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut words = words.into_iter();
    let lang = words.next().unwrap_or_default();
    let attrs = words
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (w, String::new()),
        })
        .collect();
    Ok((lang, attrs))
}

#[test]
fn info_strings_are_read_with_quoted_values() {
    let (lang, attrs) =
        info_string(r#"sh norun="needs a cluster, and root" exit=1,background"#).unwrap();
    assert_eq!(lang, "sh");
    assert_eq!(attrs["norun"], "needs a cluster, and root");
    assert_eq!(attrs["exit"], "1");
    assert!(attrs.contains_key("background"));
    assert!(info_string(r#"sh norun="open"#).is_err());
    let items = parse("text\n\n```\nx\n```\n").unwrap_err();
    assert!(items.contains("line 3"), "{items}");
}
