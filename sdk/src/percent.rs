//! Percent-encoding of one URL path segment or query value.

/// Percent-encodes everything but RFC 3986 unreserved characters, so a tag
/// like `release/v1` or an asset name with spaces stays one path segment or
/// one query value.
pub fn encode_component(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
