//! Markdown in descriptions and comments: a CommonMark subset rendered to HTML that is safe to
//! put in a page as it is.
//!
//! Raw HTML in the text is shown as text; links keep only `http(s)`, `mailto` and relative
//! URLs (and open with `rel="noopener noreferrer nofollow"`); there are no images (a ticket has
//! no files of its own to show). The HTML is cleaned by `ammonia` after rendering, so that
//! whatever the renderer lets through, no script, style, event handler or other URL scheme
//! reaches a page. The `@mentions` a text makes are `tickethub_actors::mention`'s.

use std::collections::HashSet;
use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.url_schemes(HashSet::from(["http", "https", "mailto"]))
        .url_relative(ammonia::UrlRelative::PassThrough)
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"));
    b
});

/// `text` (Markdown) as safe HTML.
pub fn to_html(text: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML is text, as the author typed it.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        // An image is its description, as text.
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => Event::Text("".into()),
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    CLEANER.clean(&html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_and_html_stays_text() {
        assert_eq!(
            to_html("**bold** and `code`"),
            "<p><strong>bold</strong> and <code>code</code></p>\n"
        );
        let html = to_html("<script>alert(1)</script> <img src=x onerror=alert(1)>");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn only_safe_links_survive() {
        let html = to_html("[a](javascript:alert(1)) [b](https://example.com) [c](/tickets/4/) [d](mailto:x@example.com) [e](data:text/html,x)");
        assert!(
            !html.contains("javascript:") && !html.contains("data:"),
            "{html}"
        );
        assert!(html.contains(r#"href="https://example.com""#), "{html}");
        assert!(html.contains(r#"href="/tickets/4/""#), "{html}");
        assert!(html.contains(r#"href="mailto:x@example.com""#), "{html}");
        assert!(html.contains("noopener"), "{html}");
        let html = to_html("![logo](https://evil.example/track.png)");
        assert!(!html.contains("<img") && !html.contains("evil"), "{html}");
        let html = to_html("<a href=\"javascript:alert(1)\" onclick=\"x()\">hi</a>");
        assert!(!html.contains("<a "), "{html}");
    }
}
