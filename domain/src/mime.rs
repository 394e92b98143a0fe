//! Blob MIME types: the type an upload is stored as, and which types a lexicon `blob` field
//! accepts. Each is one rule, used by every write path (create, update, applyWrites, import).
//!
//! A client's `Content-Type` is a claim. The stored type is what records are checked against
//! and what downloads are served as, so it comes from the bytes wherever they can tell.

/// The type of bytes nobody vouches for.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The MIME type an upload is stored as, from the type the client declared (a lower-case
/// `type/subtype`) and the bytes:
/// 1. bytes the sniffer recognises by their signature are stored as what they are, whatever was
///    declared (HTML declared as `image/png` is `text/html`);
/// 2. otherwise a declared image, video or audio type is not borne out — every format of those
///    kinds the sniffer knows has a signature — and the bytes are stored as
///    `application/octet-stream` (SVG and script text declared as images end here);
/// 3. otherwise the declared type stands (`text/plain`, `text/vtt`, …).
pub fn stored_type(declared: &str, bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    let top = declared.split_once('/').map_or(declared, |(top, _)| top);
    if matches!(top, "image" | "video" | "audio") {
        OCTET_STREAM.to_owned()
    } else {
        declared.to_owned()
    }
}

/// Whether a lexicon `accept` list admits `mime`. Patterns are exact types, `type/*` or `*/*`,
/// compared case-insensitively. A `type/*` wildcard stands for media of that kind and never
/// admits [active content](is_active_content), even where its type sits under that top level
/// (`image/svg+xml` under `image/*`): only a list naming such a type exactly admits it. `*/*`
/// admits any type.
pub fn accepts<S: AsRef<str>>(patterns: &[S], mime: &str) -> bool {
    let Some((top, sub)) = mime.split_once('/') else {
        return false;
    };
    if top.is_empty() || sub.is_empty() {
        return false;
    }
    patterns.iter().any(|p| {
        let p = p.as_ref();
        if p == "*/*" || p.eq_ignore_ascii_case(mime) {
            return true;
        }
        match p.strip_suffix("/*") {
            Some(prefix) => prefix.eq_ignore_ascii_case(top) && !is_active_content(mime),
            None => false,
        }
    })
}

/// Markup or script that a browser runs when it renders the type: HTML, XHTML, XML (SVG and
/// other `+xml` types included), JavaScript.
pub fn is_active_content(mime: &str) -> bool {
    let mime = mime.to_ascii_lowercase();
    let sub = mime.split_once('/').map_or(mime.as_str(), |(_, sub)| sub);
    sub == "html"
        || sub == "xml"
        || sub.ends_with("+xml")
        || sub.contains("javascript")
        || sub.contains("ecmascript")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY_PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
        0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn recognised_bytes_are_stored_as_what_they_are() {
        for declared in ["image/png", "image/jpeg", "text/plain", OCTET_STREAM] {
            assert_eq!(stored_type(declared, TINY_PNG), "image/png", "{declared}");
        }
        assert_eq!(
            stored_type("image/png", b"\xFF\xD8\xFF\xE0 jfif"),
            "image/jpeg"
        );
        for html in [
            &b"<!DOCTYPE html><html><script>alert(1)</script></html>"[..],
            b"  <html>",
            b"<SCRIPT>alert(1)</SCRIPT>",
            b"<iframe src=x>",
            b"<!-- a comment -->",
        ] {
            for declared in ["image/png", "image/gif", "text/html", "text/plain"] {
                assert_eq!(stored_type(declared, html), "text/html", "{html:?}");
            }
        }
        assert_eq!(
            stored_type("image/svg+xml", b"<?xml version=\"1.0\"?><svg/>"),
            "text/xml"
        );
    }

    #[test]
    fn media_types_the_bytes_do_not_bear_out_are_not_kept() {
        for (declared, bytes) in [
            ("image/png", &b"alert(document.cookie)"[..]),
            ("image/svg+xml", b"<svg onload=alert(1)>"),
            ("image/png", b"not really a png"),
            ("video/mp4", b"\x00\x01\x02\x03"),
            ("audio/mpeg", b"text"),
        ] {
            assert_eq!(stored_type(declared, bytes), OCTET_STREAM, "{declared}");
        }
        // Types without signatures keep the declared type.
        assert_eq!(stored_type("text/vtt", b"WEBVTT\n\n"), "text/vtt");
        assert_eq!(stored_type("text/plain", b"hello"), "text/plain");
        assert_eq!(stored_type(OCTET_STREAM, b"hello"), OCTET_STREAM);
    }

    #[test]
    fn accept_patterns_match_exact_types_and_wildcards() {
        let images = ["image/*"];
        for ok in ["image/png", "image/jpeg", "IMAGE/WebP", "image/avif"] {
            assert!(accepts(&images, ok), "{ok}");
        }
        for no in [
            "text/html",
            "video/mp4",
            "application/octet-stream",
            "imagex/png",
            "image",
            "image/",
            "/png",
            "",
        ] {
            assert!(!accepts(&images, no), "{no}");
        }
        assert!(accepts(&["video/mp4"], "video/mp4"));
        assert!(accepts(&["video/mp4"], "Video/MP4"));
        assert!(!accepts(&["video/mp4"], "video/webm"));
        assert!(accepts(&["image/png", "text/vtt"], "text/vtt"));
        assert!(!accepts::<&str>(&[], "image/png"));
        assert!(accepts(&["*/*"], "application/x-anything"));
        assert!(accepts(&["*/*"], "text/html"), "`*/*` means any type");
    }

    #[test]
    fn wildcards_never_admit_markup_or_script() {
        for active in [
            "image/svg+xml",
            "text/html",
            "application/xhtml+xml",
            "text/xml",
            "application/xml",
            "text/javascript",
            "application/javascript",
            "application/ecmascript",
        ] {
            assert!(is_active_content(active), "{active}");
            let (top, _) = active.split_once('/').unwrap();
            assert!(!accepts(&[format!("{top}/*")], active), "{active}");
            // Named exactly, the lexicon asks for it.
            assert!(accepts(&[active], active), "{active}");
        }
        for passive in [
            "image/png",
            "text/plain",
            "text/vtt",
            "video/mp4",
            "application/json",
        ] {
            assert!(!is_active_content(passive), "{passive}");
        }
    }
}
