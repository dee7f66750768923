//! HTTP plumbing for the test server: the parsed request, the reply, GitHub's
//! error JSON, percent-decoding and timestamps.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Where GitHub's error bodies point.
const DOCS: &str = "https://docs.github.com/rest";

/// A request as the handlers see it.
pub(super) struct Incoming<'a> {
    pub method: String,
    /// Path segments after percent-decoding (`%2F` stays inside its segment).
    pub segments: Vec<String>,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    pub body_length: Option<usize>,
    pub body: &'a mut dyn Read,
}

impl<'a> Incoming<'a> {
    pub fn new(
        method: String,
        raw_path: &str,
        raw_query: &str,
        headers: Vec<(String, String)>,
        body_length: Option<usize>,
        body: &'a mut dyn Read,
    ) -> Option<Incoming<'a>> {
        let segments = raw_path
            .split('/')
            .skip(1)
            .map(|s| percent_decode(s, false))
            .collect::<Option<Vec<_>>>()?;
        Some(Incoming {
            method,
            segments,
            query: parse_query(raw_query),
            headers,
            body_length,
            body,
        })
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body, or 413 if it is larger than `limit`.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, ApiError> {
        if self
            .body_length
            .is_some_and(|len| u64::try_from(len).map_or(true, |len| len > limit))
        {
            return Err(ApiError::too_large(limit));
        }
        let mut data = Vec::new();
        self.body
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| ApiError::new(400, &format!("Problems reading the body: {e}")))?;
        if u64::try_from(data.len()).map_or(true, |len| len > limit) {
            return Err(ApiError::too_large(limit));
        }
        Ok(data)
    }
}

/// A response before it is handed to tiny_http.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn bytes(content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body,
        }
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: text.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn redirect(location: String) -> Reply {
        Reply::empty(302).with_header("Location", location)
    }

    pub fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_owned(), value));
        self
    }
}

/// An error answer in GitHub's JSON shape.
#[derive(Debug)]
pub(super) struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Vec<Value>,
}

impl ApiError {
    pub fn new(status: u16, message: &str) -> ApiError {
        ApiError {
            status,
            message: message.to_owned(),
            errors: Vec::new(),
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "Not Found")
    }

    pub fn bad_credentials() -> ApiError {
        ApiError::new(401, "Bad credentials")
    }

    pub fn requires_authentication() -> ApiError {
        ApiError::new(401, "Requires authentication")
    }

    /// 422 as GitHub reports a field error: `{"resource","code","field"}`.
    pub fn validation(resource: &str, field: &str, code: &str) -> ApiError {
        ApiError {
            status: 422,
            message: "Validation Failed".to_owned(),
            errors: vec![json!({"resource": resource, "code": code, "field": field})],
        }
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(413, &format!("Request body is larger than {limit} bytes"))
    }

    pub fn into_reply(self) -> Reply {
        let mut body = json!({
            "message": self.message,
            "documentation_url": DOCS,
            "status": self.status.to_string(),
        });
        if let (false, Some(map)) = (self.errors.is_empty(), body.as_object_mut()) {
            map.insert("errors".to_owned(), Value::Array(self.errors));
        }
        Reply::json(self.status, &body)
    }
}

/// Decodes `%XX` escapes (and `+` as space in queries); `None` on a bad
/// escape or a result that is not UTF-8.
pub(super) fn percent_decode(raw: &str, plus_is_space: bool) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Query pairs; undecodable pairs are dropped.
fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, GitHub's timestamp format.
pub(super) fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (H. Hinnant), shifted so years start in March.
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        // Vectors checkable with `date -u -d @N`.
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("release%2Fv1", false).unwrap(), "release/v1");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("a+b%20c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
        assert!(percent_decode("%zz", false).is_none());
        assert!(percent_decode("%4", false).is_none());
        assert!(percent_decode("%FF", false).is_none());
        assert_eq!(
            parse_query("name=a%20b&label=&x"),
            [("name", "a b"), ("label", ""), ("x", "")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
