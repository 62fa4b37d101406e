//! Content conversion shared by every bridge. Starts with what keeps rooms safe: HTML from
//! another network is reduced to the subset the Client-Server spec allows in
//! `formatted_body` (`m.room.message`, "HTML format"), whatever it contains.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Tags the spec allows in `formatted_body`.
const TAGS: &[&str] = &[
    "font",
    "del",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "p",
    "a",
    "ul",
    "ol",
    "sup",
    "sub",
    "li",
    "b",
    "i",
    "u",
    "strong",
    "em",
    "s",
    "code",
    "hr",
    "br",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "caption",
    "pre",
    "span",
    "img",
    "details",
    "summary",
];

/// Attributes the spec allows, per tag.
const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("font", &["data-mx-bg-color", "data-mx-color", "color"]),
    (
        "span",
        &[
            "data-mx-bg-color",
            "data-mx-color",
            "data-mx-spoiler",
            "data-mx-maths",
        ],
    ),
    ("div", &["data-mx-maths"]),
    ("a", &["name", "target", "href"]),
    ("img", &["width", "height", "alt", "title", "src"]),
    ("ol", &["start"]),
    ("code", &["class"]),
];

/// Link schemes the spec allows in `a href`; images may only come from `mxc:`.
const LINK_SCHEMES: &[&str] = &["http", "https", "ftp", "mailto", "magnet"];

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(TAGS.iter().copied().collect())
        .tag_attributes(
            ATTRIBUTES
                .iter()
                .map(|(tag, attributes)| (*tag, attributes.iter().copied().collect()))
                .collect::<HashMap<_, HashSet<_>>>(),
        )
        .url_schemes(LINK_SCHEMES.iter().copied().chain(["mxc"]).collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(None)
        // Removed with what they contain: a reply fallback and anything executable or styling.
        .clean_content_tags(["mx-reply", "script", "style"].into_iter().collect())
        .attribute_filter(|tag, attribute, value| {
            let allowed = match (tag, attribute) {
                ("img", "src") => value.starts_with("mxc://"),
                ("a", "href") => !value.starts_with("mxc:"),
                ("code", "class") => value.starts_with("language-") && !value.contains(' '),
                ("font" | "span", "color" | "data-mx-color" | "data-mx-bg-color") => {
                    is_hex_color(value)
                }
                _ => true,
            };
            allowed.then(|| value.into())
        });
    builder
});

/// `html` reduced to the tags, attributes and URLs a Matrix `formatted_body` may hold:
/// scripts, styles, event handlers, reply fallbacks, non-`mxc` images and unknown schemes
/// are removed; text is kept (escaped).
#[must_use]
pub fn sanitize_html(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

/// `body` without the quoted fallback a client puts before a reply's text (lines starting with
/// `>` and the blank line after them), as the spec says to remove it before showing a reply.
#[must_use]
pub fn strip_reply_fallback(body: &str) -> &str {
    let mut rest = body;
    while rest.starts_with('>') {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    if rest.len() == body.len() {
        return body;
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// `#rrggbb`, the only colour form the spec allows.
fn is_hex_color(value: &str) -> bool {
    value.len() == 7 && value.starts_with('#') && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_formatting_is_kept() {
        let html = "<p>Hi <b>bold</b> <i>it</i> <a href=\"https://example.org/x?a=1\">link</a>\
                    <br><code class=\"language-rust\">fn</code> <font color=\"#ff0000\">red</font>\
                    <span data-mx-spoiler=\"why\">s</span> <img src=\"mxc://h/m\" alt=\"pic\"></p>\
                    <ol start=\"3\"><li>x</li></ol>";
        assert_eq!(sanitize_html(html), html);
    }

    #[test]
    fn reply_fallbacks_are_stripped_and_nothing_else() {
        for (body, stripped) in [
            ("> <@a:x> hi\n> there\n\nanswer", "answer"),
            (
                "> <@a:x> hi\n\nline 1\n> not a fallback",
                "line 1\n> not a fallback",
            ),
            ("plain\n> quoted later", "plain\n> quoted later"),
            ("> only a quote", ""),
        ] {
            assert_eq!(strip_reply_fallback(body), stripped, "{body:?}");
        }
    }

    #[test]
    fn anything_dangerous_or_foreign_is_removed() {
        for (dirty, clean) in [
            ("<script>alert(1)</script>ok", "ok"),
            ("<style>p{}</style><p>ok</p>", "<p>ok</p>"),
            ("<b onclick=\"x()\">ok</b>", "<b>ok</b>"),
            ("<a href=\"javascript:alert(1)\">x</a>", "<a>x</a>"),
            ("<a href=\"/relative\">x</a>", "<a>x</a>"),
            ("<img src=\"https://tracker.example/p.gif\">", "<img>"),
            (
                "<mx-reply><blockquote>quoted</blockquote></mx-reply>answer",
                "answer",
            ),
            ("<iframe src=\"https://x\"></iframe>text", "text"),
            (
                "<font color=\"red; background: url(x)\">c</font>",
                "<font>c</font>",
            ),
            (
                "<code class=\"language-rust evil\">c</code>",
                "<code>c</code>",
            ),
            ("<div style=\"position:fixed\">d</div>", "<div>d</div>"),
            ("1 < 2 & 3", "1 &lt; 2 &amp; 3"),
        ] {
            assert_eq!(sanitize_html(dirty), clean, "{dirty}");
        }
    }
}
