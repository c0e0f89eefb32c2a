//! The people a text mentions: `@carl` in a comment or a description, outside code, each
//! once. Who of them is told is the ticket actor's business (the project's people only).

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// The most mentions one text notifies: the rest are text.
pub const MAX_MENTIONS: usize = 20;

/// The usernames `text` mentions (`@carl`), in order, each once, at most [`MAX_MENTIONS`]:
/// outside code, not inside a word or an email address (`ada@example.com` mentions nobody).
pub fn mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut in_code = 0usize;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_) | CodeBlockKind::Indented)) => {
                in_code += 1
            }
            Event::End(TagEnd::CodeBlock) => in_code = in_code.saturating_sub(1),
            Event::Text(t) if in_code == 0 => {
                for name in names_in(&t) {
                    if found.len() < MAX_MENTIONS
                        && !found.iter().any(|f| f.eq_ignore_ascii_case(&name))
                    {
                        found.push(name);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// A character a username may hold (the sign-up rule: letters, digits and `@.+-_`), but `@`,
/// which starts a mention.
fn name_char(c: char) -> bool {
    c.is_alphanumeric() || ".+-_".contains(c)
}

/// The `@name`s in a run of plain text.
fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(|p| name_char(p) || p == '@') {
            let rest = &text[i + 1..];
            let len: usize = rest
                .chars()
                .take_while(|&c| name_char(c))
                .map(char::len_utf8)
                .sum();
            // A sentence's full stop (or other trailing punctuation) is not part of the name.
            let name = rest[..len].trim_end_matches(['.', '-', '+']);
            if !name.is_empty() {
                out.push(name.to_owned());
            }
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_names_after_an_at_outside_code_and_addresses() {
        assert_eq!(
            mentions("@carl can you look? cc @dev.ops, @Carl and @dev.ops."),
            vec!["carl", "dev.ops"]
        );
        assert!(mentions("mail ada@example.com or `@carl`").is_empty());
        assert!(mentions("```\n@carl\n```").is_empty());
        assert_eq!(mentions("**@ada**: done"), vec!["ada"]);
        assert!(mentions("@ alone, @@, @.").is_empty());
        let many: String = (0..30).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }
}
