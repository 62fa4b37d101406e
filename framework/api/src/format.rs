//! Content conversion shared by every bridge. Starts with what keeps rooms safe: HTML from
//! another network is reduced to the subset the Client-Server spec allows in
//! `formatted_body` (`m.room.message`, "HTML format"), whatever it contains.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
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

/// The Matrix user a link points to, if it is a mention pill (`https://matrix.to/#/@user:server`).
#[must_use]
pub fn mentioned_user(href: &str) -> Option<ruma::OwnedUserId> {
    match ruma::MatrixToUri::parse(href).ok()?.id() {
        ruma::matrix_uri::MatrixId::User(user) => Some(user.clone()),
        _ => None,
    }
}

/// Matrix HTML as plain text, for a network without formatting: paragraphs, line breaks and
/// list items (`• `) kept, a link shown as `text (url)` unless the text is the URL, a reply
/// fallback dropped; a mention pill becomes what `mention(user, text)` says (the bridge's way
/// to write a mention on its network, e.g. the remote user's name).
#[must_use]
pub fn html_to_text(html: &str, mention: &dyn Fn(&ruma::UserId, &str) -> String) -> String {
    render(html, Style::Plain, mention)
}

/// Matrix HTML as Markdown, for a network whose users write Markdown: bold, italics,
/// strike-through, code and code blocks, links `[text](url)`, lists, quotes and headings;
/// a mention pill becomes what `mention(user, text)` says.
#[must_use]
pub fn html_to_markdown(html: &str, mention: &dyn Fn(&ruma::UserId, &str) -> String) -> String {
    render(html, Style::Markdown, mention)
}

/// What HTML is rendered as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Markdown,
}

fn render(html: &str, style: Style, mention: &dyn Fn(&ruma::UserId, &str) -> String) -> String {
    let parsed = ruma::html::Html::parse(html);
    let mut text = String::new();
    for node in parsed.children() {
        write_text(&node, style, &mut text, mention);
    }
    text.trim().to_owned()
}

/// The value of an element's attribute.
fn attribute(element: &ruma::html::ElementData, name: &str) -> Option<String> {
    element
        .attrs
        .borrow()
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| a.value.to_string())
}

fn write_text(
    node: &ruma::html::NodeRef,
    style: Style,
    out: &mut String,
    mention: &dyn Fn(&ruma::UserId, &str) -> String,
) {
    if let Some(text) = node.as_text() {
        out.push_str(&text.borrow());
        return;
    }
    let Some(element) = node.as_element() else {
        return;
    };
    let name: &str = &element.name.local;
    let inner = |out: &mut String| {
        for child in node.children() {
            write_text(&child, style, out, mention);
        }
    };
    let markdown = style == Style::Markdown;
    let wrapped = |out: &mut String, mark: &str| {
        out.push_str(mark);
        inner(out);
        out.push_str(mark);
    };
    match name {
        "mx-reply" | "script" | "style" => {}
        "br" => out.push('\n'),
        "b" | "strong" if markdown => wrapped(out, "**"),
        "i" | "em" if markdown => wrapped(out, "_"),
        "del" | "s" if markdown => wrapped(out, "~~"),
        "code" if markdown && !in_code_block(node) => wrapped(out, "`"),
        "li" => {
            out.push_str(if markdown { "- " } else { "• " });
            inner(out);
            out.push('\n');
        }
        "a" => {
            let href = attribute(element, "href");
            let mut label = String::new();
            inner(&mut label);
            match href {
                Some(href) => match mentioned_user(&href) {
                    Some(user) => out.push_str(&mention(&user, &label)),
                    None if label.is_empty() || label == href => out.push_str(&href),
                    None if markdown => {
                        let _ = write!(out, "[{label}]({href})");
                    }
                    None => {
                        let _ = write!(out, "{label} ({href})");
                    }
                },
                None => out.push_str(&label),
            }
        }
        "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "pre" | "ul"
        | "ol" | "tr" | "table" => {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if markdown {
                write_block_markdown(name, out, inner);
            } else {
                inner(out);
            }
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        _ => inner(out),
    }
}

/// Whether `node` is the code of a code block (`<pre><code>`), fenced by its `pre`.
fn in_code_block(node: &ruma::html::NodeRef) -> bool {
    node.parent()
        .and_then(|parent| parent.as_element().map(|e| &*e.name.local == "pre"))
        .unwrap_or(false)
}

/// A block element in Markdown: headings get `#`s, quotes `> ` on each line, code blocks
/// fences.
fn write_block_markdown(name: &str, out: &mut String, inner: impl Fn(&mut String)) {
    match name {
        "blockquote" => {
            let mut quoted = String::new();
            inner(&mut quoted);
            for line in quoted.trim_end().lines() {
                let _ = writeln!(out, "> {line}");
            }
        }
        "pre" => {
            out.push_str("```\n");
            inner(out);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("```");
        }
        heading if heading.len() == 2 && heading.starts_with('h') => {
            let level = heading[1..].parse::<usize>().unwrap_or(1);
            out.push_str(&"#".repeat(level));
            out.push(' ');
            inner(out);
        }
        _ => inner(out),
    }
}

/// Matrix HTML from Markdown, for a network whose users write Markdown; `None` when the text
/// has no formatting (send it as plain text).
#[must_use]
pub fn markdown_to_html(markdown: &str) -> Option<String> {
    ruma::events::room::message::FormattedBody::markdown(markdown)
        .map(|formatted| sanitize_html(&formatted.body))
}

/// Plain text made safe to put into HTML (`<`, `&`, quotes… escaped).
#[must_use]
pub fn clean_text(text: &str) -> String {
    ammonia::clean_text(text)
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
    fn html_becomes_readable_text_with_mentions_from_the_bridge() {
        let mention = |user: &ruma::UserId, _: &str| format!("@{}", user.localpart());
        let html = "<mx-reply><blockquote>old</blockquote></mx-reply><p>Hi \
                    <a href=\"https://matrix.to/#/@bob:x\">Bob</a>, see \
                    <a href=\"https://example.org\">this</a> and \
                    <a href=\"https://example.org/a\">https://example.org/a</a></p>\
                    <ul><li>one</li><li><b>two</b></li></ul>line<br>break &amp; 1 &lt; 2";
        assert_eq!(
            html_to_text(html, &mention),
            "Hi @bob, see this (https://example.org) and https://example.org/a\n• one\n• two\n\
             line\nbreak & 1 < 2"
        );
    }

    #[test]
    fn html_becomes_markdown_for_networks_that_write_it() {
        let mention = |user: &ruma::UserId, label: &str| format!("@{label}<{}>", user.localpart());
        let html = "<h2>Title</h2><p><b>bold</b>, <em>it</em>, <del>gone</del>, <code>x</code> \
                    <a href=\"https://example.org\">link</a> \
                    <a href=\"https://matrix.to/#/@bob:x\">Bob</a></p>\
                    <blockquote>quoted\nlines</blockquote><pre><code>fn main() {}</code></pre>\
                    <ol><li>one</li></ol>";
        assert_eq!(
            html_to_markdown(html, &mention),
            "## Title\n**bold**, _it_, ~~gone~~, `x` [link](https://example.org) @Bob<bob>\n\
             > quoted\n> lines\n```\nfn main() {}\n```\n- one"
        );
    }

    #[test]
    fn markdown_becomes_sanitised_html_and_plain_text_stays_plain() {
        assert_eq!(
            markdown_to_html("**bold** and [link](https://example.org)").as_deref(),
            Some("<strong>bold</strong> and <a href=\"https://example.org\">link</a>")
        );
        assert_eq!(markdown_to_html("just words"), None);
        assert_eq!(
            markdown_to_html("<script>x</script>*it*")
                .as_deref()
                .map(|h| h.contains("script")),
            Some(false)
        );
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
