//! Which files an attachment may be: the media types taken, how a file's type is decided, and
//! which are shown in a page rather than downloaded.

use crate::setting::ConfigError;

/// The types taken unless `--attachment-types` says otherwise: pictures, PDFs, text, office
/// documents and archives. Never HTML or SVG, which a browser would run.
pub const DEFAULT_TYPES: [&str; 16] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/json",
    "application/zip",
    "application/gzip",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
];

/// The pictures a page shows in place (served `inline`), if their bytes say they are what
/// they claim; every other type is served as a download.
const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Whether a file of `content_type` is shown in place.
pub fn inline_image(content_type: &str) -> bool {
    INLINE_IMAGES.contains(&content_type)
}

/// The media types taken.
#[derive(Clone, Debug)]
pub struct Kinds(Vec<String>);

const FLAG: &str = "--attachment-types (TICKETHUB_ATTACHMENT_TYPES)";

impl Kinds {
    /// The list a flag gives.
    pub fn parse(list: &[String]) -> Result<Self, ConfigError> {
        let mut kinds = Vec::new();
        for t in list {
            let t = t.trim().to_ascii_lowercase();
            if t.is_empty() {
                continue;
            }
            let valid = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && !t.contains([' ', ';', ','])
                    && (b == "*" || !b.contains('*') || b.ends_with(".*"))
                    && a != "*"
            });
            if !valid {
                return Err(ConfigError::new(
                    FLAG,
                    format!("{t:?} is not a media type (type/subtype, type/*, or type/prefix.*)"),
                ));
            }
            kinds.push(t);
        }
        if kinds.is_empty() {
            return Err(ConfigError::new(FLAG, "names no type"));
        }
        Ok(Self(kinds))
    }

    /// Whether `content_type` is taken.
    pub fn allows(&self, content_type: &str) -> bool {
        self.0.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => content_type.starts_with(prefix),
            None => k == content_type,
        })
    }

    /// The types taken, as configured.
    pub fn list(&self) -> &[String] {
        &self.0
    }
}

/// A file's media type: the one its upload declared (without parameters), else the one its
/// name's extension suggests, else `application/octet-stream`.
pub fn decide(declared: Option<&str>, file_name: &str) -> String {
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty() && d != "application/octet-stream");
    declared.unwrap_or_else(|| {
        mime_guess::from_path(file_name)
            .first()
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_else(|| "application/octet-stream".to_owned())
    })
}

/// Whether a picture's first bytes are those of the type it claims (a page shows a picture in
/// place, so one that is something else in disguise is refused).
pub fn looks_like(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => true,
    }
}

/// A file name fit to store and show: its last path part, without control characters,
/// trimmed, at most 255 characters; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .take(255)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_takes_exact_types_and_families() {
        let kinds = Kinds::parse(&DEFAULT_TYPES.map(String::from)).unwrap();
        assert!(kinds.allows("image/png"));
        assert!(
            kinds.allows("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        );
        assert!(!kinds.allows("text/html"));
        assert!(!kinds.allows("image/svg+xml"));
        assert!(!kinds.allows("application/octet-stream"));
        let images = Kinds::parse(&["image/*".into()]).unwrap();
        assert!(images.allows("image/svg+xml"));
        assert!(!images.allows("imagex/png"));
        for bad in ["*/*", "png", "image/p*g", "text/html; charset=x", ""] {
            assert!(Kinds::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_are_decided_and_pictures_checked() {
        assert_eq!(decide(Some("Image/PNG; x=y"), "a.txt"), "image/png");
        assert_eq!(
            decide(Some("application/octet-stream"), "a.pdf"),
            "application/pdf"
        );
        assert_eq!(decide(None, "notes.csv"), "text/csv");
        assert_eq!(decide(None, "blob"), "application/octet-stream");
        assert!(looks_like("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(!looks_like("image/png", b"<svg onload=alert(1)>"));
        assert!(!looks_like("image/gif", b"GIF"));
        assert!(looks_like("application/pdf", b"anything"));
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(clean_name("evil\u{202E}fdp.exe"), "evilfdp.exe");
        assert_eq!(clean_name("a\r\nb.txt"), "ab.txt");
        assert_eq!(clean_name("..."), "file");
        assert_eq!(
            clean_name("<img src=x onerror=alert(1)>.png"),
            "<img src=x onerror=alert(1)>.png"
        );
        assert_eq!(clean_name(&"x".repeat(300)).len(), 255);
    }
}
