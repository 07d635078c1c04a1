//! HTML for the console, written by hand: every value from the log goes through [`esc`]
//! (or [`url_part`] for a link's query), the only way text enters a page; the markup itself
//! is constant. No template crate: the console is two pages, and one escaping function is
//! easy to audit.

use std::fmt::Write;

/// Escapes text for an HTML element's content or a quoted attribute value.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for a URL query component, then for an attribute.
pub fn url_part(text: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
    esc(&encoded)
}

/// The Content-Security-Policy of every console response: nothing but this origin's own
/// stylesheet and script, no inline code, no framing, forms only to itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page around `body`, titled `title`.
pub fn page(title: &str, status: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · graphgate audit</title>
<link rel="stylesheet" href="/audit/static/console.css">
<script src="/audit/static/console.js" defer></script>
</head>
<body>
<header>
<h1><a href="/audit">graphgate audit</a></h1>
<nav id="sections"><a href="/audit">Actions</a> <a href="/audit/approvals">Approvals</a></nav>
{status}
</header>
<main>
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
    );
    out
}

/// A `<select>` named `name` with an empty "any" choice and `options`, `selected` chosen.
pub fn select(name: &str, label: &str, options: &[String], selected: Option<&str>) -> String {
    let mut out = format!(
        r#"<label>{label} <select name="{name}" data-autosubmit><option value="">any</option>"#
    );
    for o in options {
        let chosen = if Some(o.as_str()) == selected {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, r#"<option{chosen}>{}</option>"#, esc(o));
    }
    out.push_str("</select></label>");
    out
}

/// An `<input>` named `name` holding `value`.
pub fn input(name: &str, label: &str, kind: &str, value: Option<&str>, hint: &str) -> String {
    format!(
        r#"<label>{label} <input type="{kind}" name="{name}" value="{}" placeholder="{hint}"></label>"#,
        esc(value.unwrap_or(""))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_become_markup() {
        let hostile = r#"<script>alert("x")</script>' onmouseover='x' &amp;"#;
        let out = esc(hostile);
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"'));
        assert!(!out.contains('\''));
        assert_eq!(esc("a&b"), "a&amp;b");
        let opt = select("caller", "Caller", &[hostile.to_owned()], None);
        assert!(!opt.contains("<script>"), "{opt}");
        assert_eq!(url_part("a b&c=\"d\""), "a+b%26c%3D%22d%22");
    }
}
