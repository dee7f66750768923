//! The first steps of reading every versioned JSON format: the size cap,
//! checked before parsing, then the `version` member, checked before the
//! shape, so that a newer document is reported as newer rather than as a
//! list of unknown fields. Each format maps [`EnvelopeError`] into its own
//! error type, whose messages name the format.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a document was refused before its shape was looked at.
#[derive(Debug)]
pub(crate) enum EnvelopeError {
    /// Over the format's size limit.
    TooLarge { size: usize, max: usize },
    /// Not JSON.
    Json(String),
    /// `version` missing or not the one this build reads; `found` is what
    /// was there (`nothing` when missing).
    Version { found: String },
}

/// Parse `bytes` (at most `max`) as JSON whose `version` is `version`.
pub(crate) fn parse(bytes: &[u8], max: usize, version: u32) -> Result<Value, EnvelopeError> {
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    check_version(&value, version)?;
    Ok(value)
}

/// Check the `version` member of an already parsed document.
pub(crate) fn check_version(value: &Value, version: u32) -> Result<(), EnvelopeError> {
    match value.get("version") {
        Some(v) if v.as_u64() == Some(u64::from(version)) => Ok(()),
        other => Err(EnvelopeError::Version {
            found: other.map_or_else(|| "nothing".to_owned(), Value::to_string),
        }),
    }
}

/// [`parse`] and [`deserialize_named`] in one, straight from the bytes: no
/// [`Value`] tree of the document is built, so a document that carries
/// secrets (the deploy request's private environment) leaves no copies of
/// them behind but the ones in `T`, which the caller can wipe. Only the
/// `version` member is read first (every other member is skipped, not
/// copied), so a newer document is still reported as newer. `Err(Ok(_))` is
/// an envelope problem, `Err(Err((path, problem)))` a shape problem.
pub(crate) fn parse_direct<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
    version: u32,
) -> Result<T, Result<EnvelopeError, (String, String)>> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        #[serde(default)]
        version: Option<Value>,
    }
    if bytes.len() > max {
        return Err(Ok(EnvelopeError::TooLarge {
            size: bytes.len(),
            max,
        }));
    }
    let probe: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| Ok(EnvelopeError::Json(e.to_string())))?;
    match probe.version {
        Some(v) if v.as_u64() == Some(u64::from(version)) => {}
        other => {
            return Err(Ok(EnvelopeError::Version {
                found: other.map_or_else(|| "nothing".to_owned(), |v| v.to_string()),
            }))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        Err((path, e.into_inner().to_string()))
    })?;
    deserializer
        .end()
        .map_err(|e| Ok(EnvelopeError::Json(e.to_string())))?;
    Ok(value)
}

/// Deserialize `value`, naming the field that failed: `Err((path, problem))`,
/// with path `.` for the document itself (e.g. a missing field, which serde
/// names in the problem).
pub(crate) fn deserialize_named<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_then_json_then_version() {
        assert!(matches!(
            parse(b"{}", 1, 1),
            Err(EnvelopeError::TooLarge { size: 2, max: 1 })
        ));
        assert!(matches!(parse(b"{", 10, 1), Err(EnvelopeError::Json(_))));
        for (json, found) in [
            (&b"{}"[..], "nothing"),
            (b"{\"version\":2}", "2"),
            (b"{\"version\":\"1\"}", "\"1\""),
        ] {
            match parse(json, 100, 1) {
                Err(EnvelopeError::Version { found: f }) => assert_eq!(f, found),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(parse(b"{\"version\":1}", 100, 1).unwrap()["version"], 1);
    }

    #[test]
    fn direct_parse_checks_size_json_and_version_first_then_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            version: u32,
            port: u16,
        }
        let envelope = |json: &[u8]| match parse_direct::<Doc>(json, 100, 1) {
            Err(Ok(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            parse_direct::<Doc>(b"{}", 1, 1),
            Err(Ok(EnvelopeError::TooLarge { size: 2, max: 1 }))
        ));
        assert!(matches!(envelope(b"{"), EnvelopeError::Json(_)));
        // A newer document with other fields is reported as newer.
        match envelope(br#"{"version":2,"other":"x"}"#) {
            EnvelopeError::Version { found } => assert_eq!(found, "2"),
            other => panic!("{other:?}"),
        }
        match parse_direct::<Doc>(br#"{"version":1,"port":70000}"#, 100, 1) {
            Err(Err((path, problem))) => {
                assert_eq!(path, "port");
                assert!(problem.contains("70000"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let doc: Doc = parse_direct(br#"{"version":1,"port":7}"#, 100, 1).unwrap();
        assert_eq!(doc.port, 7);
    }

    #[test]
    fn deserialize_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            port: u16,
        }
        let (path, problem) =
            deserialize_named::<Doc>(serde_json::json!({"port": 70000})).unwrap_err();
        assert_eq!(path, "port");
        assert!(problem.contains("70000"), "{problem}");
        let (path, problem) = deserialize_named::<Doc>(serde_json::json!({})).unwrap_err();
        assert_eq!(path, ".");
        assert!(problem.contains("missing field `port`"), "{problem}");
    }
}
