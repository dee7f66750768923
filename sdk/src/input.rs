//! Reading binary inputs (quotes, keys, blobs) from files that hold raw
//! bytes, hex or base64, with a size cap enforced before reading.
//!
//! Detection: raw bytes are recognised by content — anything that starts
//! like a TDX quote (`04 00` / `05 00`) or contains a byte that is not
//! printable ASCII or whitespace. Text is decoded as hex (whitespace
//! anywhere, optional `0x`), else as base64 (standard or URL-safe, padding
//! optional, whitespace anywhere). Hex comes first: a string of hex digits is
//! read as hex even where it would also be valid base64.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes, or only whitespace.
    #[error("input is empty")]
    Empty,
    /// Text that is neither encoding; each field says why.
    #[error("input is text but neither hex ({hex}) nor base64 ({base64})")]
    NotHexOrBase64 { hex: String, base64: String },
}

/// Why a file could not be read as binary input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is over the caller's cap (`size` is a lower bound when the
    /// file system does not report sizes, as for pipes and devices).
    #[error("{} is too large: {size} bytes or more, the limit is {max} bytes", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        max: usize,
    },
    /// The contents are not raw binary, hex or base64.
    #[error("{}: {reason}", path.display())]
    Undecodable { path: PathBuf, reason: DecodeError },
}

/// Read `path` (at most `max_len` bytes as stored, so hex needs twice the
/// decoded size) and decode it with [`decode_binary`].
pub fn read_binary(path: impl AsRef<Path>, max_len: usize) -> Result<Vec<u8>, InputError> {
    let path = path.as_ref();
    let io = |error| InputError::Io {
        path: path.to_owned(),
        error,
    };
    let too_large = |size| InputError::TooLarge {
        path: path.to_owned(),
        size,
        max: max_len,
    };
    let cap = u64::try_from(max_len).unwrap_or(u64::MAX);

    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_file() && meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    // The size can change after the check, and devices or pipes report none:
    // read at most one byte past the cap.
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > max_len {
        return Err(too_large(u64::try_from(bytes.len()).unwrap_or(u64::MAX)));
    }
    decode_binary(bytes).map_err(|reason| InputError::Undecodable {
        path: path.to_owned(),
        reason,
    })
}

/// Decode raw binary, hex or base64 (see the module docs). Raw input is
/// returned as is, without copying.
pub fn decode_binary(bytes: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let looks_like_quote = matches!(bytes.as_slice(), [4 | 5, 0, ..]);
    if looks_like_quote
        || !bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return Ok(bytes);
    }
    // All bytes are ASCII, so this cannot fail; treat failure as binary anyway.
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    if text.trim().is_empty() {
        return Err(DecodeError::Empty);
    }
    let hex = match decode_hex(text) {
        Ok(decoded) => return Ok(decoded),
        Err(problem) => problem,
    };
    decode_base64(text).map_err(|base64| DecodeError::NotHexOrBase64 { hex, base64 })
}

/// "line L, column C" of byte `offset` in ASCII `text` (both 1-based).
fn position(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    format!("line {line}, column {column}")
}

/// Hex digits with whitespace anywhere and an optional leading `0x`.
fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let start = text.len() - text.trim_start().len();
    let digits_start = match text.get(start..start + 2) {
        Some("0x" | "0X") => start + 2,
        _ => start,
    };
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for (i, c) in text.char_indices().skip_while(|&(i, _)| i < digits_start) {
        if c.is_ascii_whitespace() {
            continue;
        }
        let Some(nibble) = c.to_digit(16).and_then(|d| u8::try_from(d).ok()) else {
            return Err(format!("'{c}' at {} is not a hex digit", position(text, i)));
        };
        match high.take() {
            Some(h) => out.push(h << 4 | nibble),
            None => high = Some(nibble),
        }
    }
    if high.is_some() {
        return Err(format!("odd number of hex digits ({})", out.len() * 2 + 1));
    }
    if out.is_empty() {
        return Err("no hex digits".to_string());
    }
    Ok(out)
}

const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

/// Base64, standard or URL-safe (not mixed), padding optional, whitespace
/// anywhere.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let mut compact = String::with_capacity(text.len());
    let mut standard_only: Option<(char, usize)> = None;
    let mut url_only: Option<(char, usize)> = None;
    let mut padding_at: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_ascii_whitespace() {
            continue;
        }
        match c {
            '=' => {
                padding_at.get_or_insert(i);
            }
            _ if padding_at.is_some() => {
                return Err(format!(
                    "'{c}' at {} follows '=' padding",
                    position(text, i)
                ));
            }
            'A'..='Z' | 'a'..='z' | '0'..='9' => {}
            '+' | '/' => {
                standard_only.get_or_insert((c, i));
            }
            '-' | '_' => {
                url_only.get_or_insert((c, i));
            }
            _ => {
                return Err(format!(
                    "'{c}' at {} is not a base64 character",
                    position(text, i)
                ))
            }
        }
        compact.push(c);
    }
    let engine = match (standard_only, url_only) {
        (Some((s, si)), Some((u, ui))) => {
            return Err(format!(
                "mixes the standard alphabet ('{s}' at {}) and the URL-safe one ('{u}' at {})",
                position(text, si),
                position(text, ui)
            ))
        }
        (None, Some(_)) => &BASE64_URL_SAFE,
        _ => &BASE64_STANDARD,
    };
    engine.decode(compact.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
        decode_binary(text.as_bytes().to_vec())
    }

    fn problems(text: &str) -> (String, String) {
        match decode(text) {
            Err(DecodeError::NotHexOrBase64 { hex, base64 }) => (hex, base64),
            other => panic!("expected NotHexOrBase64 for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn raw_binary_is_recognised_by_content() {
        // Starts like a quote: kept even though the rest is text.
        let quote_start = b"\x04\x00abcdef".to_vec();
        assert_eq!(decode_binary(quote_start.clone()).unwrap(), quote_start);
        let binary = vec![0xff, b'a', b'b'];
        assert_eq!(decode_binary(binary.clone()).unwrap(), binary);
    }

    #[test]
    fn hex_with_prefix_case_and_whitespace() {
        assert_eq!(decode("0x04 00\n0A0b\r\n").unwrap(), [4, 0, 10, 11]);
        assert_eq!(decode("  0XdeadBEEF").unwrap(), [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn base64_standard_and_url_safe_with_or_without_padding() {
        // RFC 4648 test vectors: "foobar" family.
        assert_eq!(decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode("Zm9v\nYg").unwrap(), b"foob");
        // 0xfb 0xff encodes to "+/8=" (standard) and "-_8" (URL-safe).
        assert_eq!(decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        // A quote's first bytes in base64.
        assert_eq!(decode("BAACAIEAAAA=").unwrap(), [4, 0, 2, 0, 0x81, 0, 0, 0]);
    }

    #[test]
    fn hex_is_preferred_when_both_would_work() {
        // "abcd" is valid base64 (3 bytes) and valid hex (2 bytes).
        assert_eq!(decode("abcd").unwrap(), [0xab, 0xcd]);
    }

    #[test]
    fn errors_say_where_the_text_goes_wrong() {
        let (hex, base64) = problems("0400\n02!0");
        assert_eq!(hex, "'!' at line 2, column 3 is not a hex digit");
        assert_eq!(base64, "'!' at line 2, column 3 is not a base64 character");

        let (hex, base64) = problems("+/-_");
        assert!(hex.contains("'+' at line 1, column 1"), "{hex}");
        assert!(
            base64.contains("mixes the standard alphabet ('+' at line 1, column 1)"),
            "{base64}"
        );

        let (_, base64) = problems("Zg==Zg==");
        assert_eq!(base64, "'Z' at line 1, column 5 follows '=' padding");

        let (hex, base64) = problems("abc\nde");
        assert_eq!(hex, "odd number of hex digits (5)");
        assert!(base64.to_lowercase().contains("invalid"), "{base64}");
    }

    #[test]
    fn empty_and_blank_inputs_are_empty() {
        assert_eq!(decode_binary(Vec::new()), Err(DecodeError::Empty));
        assert_eq!(decode(" \n\t"), Err(DecodeError::Empty));
    }

    #[test]
    fn read_binary_caps_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quote.hex");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0x0400 0200\n")
            .unwrap();
        assert_eq!(read_binary(&path, 12).unwrap(), [4, 0, 2, 0]);

        let err = read_binary(&path, 11).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::TooLarge {
                    size: 12,
                    max: 11,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("quote.hex"), "{err}");

        let missing = dir.path().join("missing.bin");
        let err = read_binary(&missing, 100).unwrap_err();
        assert!(matches!(err, InputError::Io { .. }));
        assert!(err.to_string().contains("missing.bin"), "{err}");

        std::fs::write(&path, "zz").unwrap();
        let err = read_binary(&path, 100).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: input is text", path.display())),
            "{err}"
        );
    }

    /// Devices report no size: the cap must still hold (via `take`).
    #[cfg(target_os = "linux")]
    #[test]
    fn read_binary_caps_endless_files() {
        let err = read_binary("/dev/zero", 1024).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::TooLarge {
                    size: 1025,
                    max: 1024,
                    ..
                }
            ),
            "{err}"
        );
    }
}
