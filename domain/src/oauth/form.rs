//! `application/x-www-form-urlencoded` (the WHATWG URL standard's serializer and parser): the
//! bodies of PAR, token and revocation requests, the authorization URL's query, loopback client
//! ids and the callback's query string.

/// Serializes name/value pairs: `*-._` and ASCII alphanumerics stay, space becomes `+`, every
/// other byte of the UTF-8 text is `%XX`.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        match b {
            b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

/// Parses a query string or form body (without the leading `?`): `&`-separated, `+` is a space,
/// `%XX` is a byte; a malformed escape is kept as written and bytes that are not UTF-8 are
/// replaced (U+FFFD), as the WHATWG parser does. Empty sequences are skipped.
pub fn decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(high), Some(low)) => {
                        // Two hex digits are at most 0xff.
                        out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with `pairs` appended to its query (`?` or `&`).
pub fn with_query<'a>(url: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let query = encode(pairs);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}
