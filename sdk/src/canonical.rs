//! RFC 8785 canonical JSON (JCS): the input of every hash over JSON.
//!
//! Output rules (RFC 8785 §3.2): no whitespace; object members sorted by the
//! UTF-16 code units of their names; strings escaped minimally (`\"`, `\\`,
//! `\b \f \n \r \t`, other control characters as lower-case `\u00xx`, every
//! other character as UTF-8); literals `null`, `true`, `false`.
//!
//! Numbers: the formats hashed by this project carry integers only. An
//! integer is written as its decimal digits, which is exactly what RFC 8785's
//! ES6 number formatting produces for integers of magnitude at most 2^53 - 1
//! (the I-JSON range, RFC 7493). Anything else — a float, or an integer that
//! ES6 formatting would round — is rejected with the JSON Pointer of the value
//! instead of formatted, so a hash can never depend on float printing. A
//! format that needs such a value must carry it as a string.

use serde::Serialize;
use serde_json::{Number, Value};

/// The largest integer magnitude canonical JSON accepts (2^53 - 1): beyond
/// it, RFC 8785's ES6 number formatting no longer prints every digit.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical JSON form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A non-integer number; `pointer` is its RFC 6901 JSON Pointer.
    #[error("number {number} at JSON pointer {pointer:?} is not an integer; hashed JSON carries integers only")]
    NotAnInteger { pointer: String, number: String },
    /// An integer outside ±[`MAX_SAFE_INTEGER`].
    #[error(
        "integer {number} at JSON pointer {pointer:?} is outside ±(2^53-1); carry it as a string"
    )]
    IntegerOutOfRange { pointer: String, number: String },
    /// The value could not be converted to JSON at all (e.g. a map with non-string keys).
    #[error("value cannot be represented as JSON: {0}")]
    NotJson(String),
}

/// The canonical JSON text of `value`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::NotJson(e.to_string()))?;
    let mut out = String::new();
    let mut pointer = String::new();
    write_value(&mut out, &mut pointer, &value)?;
    Ok(out)
}

/// The canonical JSON bytes of `value` (UTF-8).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    to_string(value).map(String::into_bytes)
}

/// Append the canonical form of `value`; `pointer` is its JSON Pointer, used
/// in errors and restored before returning.
fn write_value(
    out: &mut String,
    pointer: &mut String,
    value: &Value,
) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_integer(out, pointer, number)?,
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let restore = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                write_value(out, pointer, item)?;
                pointer.truncate(restore);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, (name, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                let restore = pointer.len();
                pointer.push('/');
                push_pointer_token(pointer, name);
                write_value(out, pointer, member)?;
                pointer.truncate(restore);
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_integer(out: &mut String, pointer: &str, number: &Number) -> Result<(), CanonicalError> {
    let in_range = if let Some(n) = number.as_u64() {
        n <= MAX_SAFE_INTEGER
    } else if let Some(n) = number.as_i64() {
        n.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        return Err(CanonicalError::NotAnInteger {
            pointer: pointer.to_owned(),
            number: number.to_string(),
        });
    };
    if !in_range {
        return Err(CanonicalError::IntegerOutOfRange {
            pointer: pointer.to_owned(),
            number: number.to_string(),
        });
    }
    // serde_json prints integers as plain decimal digits with a leading '-'
    // for negatives: the ES6 form for this range.
    out.push_str(&number.to_string());
    Ok(())
}

/// RFC 8785 §3.2.2.2 string serialization.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append one RFC 6901 reference token (`~` -> `~0`, `/` -> `~1`).
fn push_pointer_token(pointer: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// What kind of JSON value `value` is, for messages: `"a string"`,
/// `"an object"`, `"null"`, ...
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_at_the_safe_limit() {
        let max = MAX_SAFE_INTEGER;
        assert_eq!(
            to_string(&json!([max, -(max as i64), 0])).unwrap(),
            format!("[{max},-{max},0]")
        );
        let err = to_string(&json!({"a": [max + 1]})).unwrap_err();
        assert_eq!(
            err,
            CanonicalError::IntegerOutOfRange {
                pointer: "/a/0".into(),
                number: (max + 1).to_string()
            }
        );
        let err = to_string(&json!({"a": -(max as i64) - 1})).unwrap_err();
        assert!(
            matches!(err, CanonicalError::IntegerOutOfRange { ref pointer, .. } if pointer == "/a")
        );
    }

    #[test]
    fn float_error_names_the_pointer() {
        let err = to_string(&json!({"a/b": {"~x": [1, 2.5]}})).unwrap_err();
        assert_eq!(
            err,
            CanonicalError::NotAnInteger {
                pointer: "/a~1b/~0x/1".into(),
                number: "2.5".into()
            }
        );
        assert!(err.to_string().contains("\"/a~1b/~0x/1\""), "{err}");
        // A float that happens to be integral is still a float.
        assert!(matches!(
            to_string(&1.0f64),
            Err(CanonicalError::NotAnInteger { .. })
        ));
    }

    #[test]
    fn control_characters_use_lower_case_escapes() {
        assert_eq!(
            to_string("\u{8}\u{c}\n\r\t\"\\").unwrap(),
            r#""\b\f\n\r\t\"\\""#
        );
        let text = "\u{0}\u{1f}\u{7f}\u{2028}/";
        assert_eq!(
            to_string(text).unwrap(),
            "\"\\u0000\\u001f\u{7f}\u{2028}/\""
        );
    }

    #[test]
    fn non_string_map_keys_are_not_json() {
        let map: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(matches!(to_string(&map), Err(CanonicalError::NotJson(_))));
    }
}
