//! A plain HTTPS GET with a size cap, for allowlists hosted outside the
//! configured GitHub instance. Redirects are followed by hand so that each
//! hop is counted and none leaves HTTPS.

use std::time::Duration;

use ureq::http::{header, Uri};

/// Redirect hops followed (a release CDN uses one).
const MAX_REDIRECTS: usize = 5;

/// An HTTPS-only client that counts the requests it sends.
pub(crate) struct PlainHttps {
    agent: ureq::Agent,
    /// Requests sent so far, redirect hops included.
    pub(crate) requests_sent: u64,
}

impl PlainHttps {
    /// A client with these connect and read timeouts.
    pub(crate) fn new(connect_timeout: Duration, read_timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .https_only(true)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(Some(connect_timeout))
            .timeout_connect(Some(connect_timeout))
            .timeout_per_read(Some(read_timeout))
            .user_agent(concat!("easyenclave/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        PlainHttps {
            agent,
            requests_sent: 0,
        }
    }

    /// The body at `url`, at most `max_bytes` long; the error says what failed.
    pub(crate) fn get(&mut self, url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
        let mut target = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            self.requests_sent += 1;
            let mut response = self
                .agent
                .get(&target)
                .call()
                .map_err(|e| format!("GET {}: {e}", without_query(&target)))?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{status} redirect without a usable Location"))?;
                target = resolve(&target, location)?;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(format!("GET {} answered {status}", without_query(&target)));
            }
            return response
                .body_mut()
                .with_config()
                .limit(max_bytes)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => {
                        format!("the body is over the {max_bytes}-byte limit")
                    }
                    other => format!("reading the body: {other}"),
                });
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// A redirect target: an absolute `https://` URL, or an absolute path on the
/// current origin.
fn resolve(current: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    if location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let uri: Uri = current
            .parse()
            .map_err(|_| "unparsable redirecting URL".to_owned())?;
        let authority = uri
            .authority()
            .ok_or_else(|| "redirecting URL has no host".to_owned())?;
        return Ok(format!("https://{authority}{location}"));
    }
    Err(format!(
        "refusing to follow a redirect to {:?}: only https:// URLs and absolute paths",
        without_query(location)
    ))
}

/// A URL without its query, which may carry a storage signature.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(before, _)| before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_https() {
        assert_eq!(
            resolve("https://a.example/x", "https://cdn.example/y?sig=1").unwrap(),
            "https://cdn.example/y?sig=1"
        );
        assert_eq!(
            resolve("https://a.example:8443/x", "/y").unwrap(),
            "https://a.example:8443/y"
        );
        for bad in [
            "http://cdn.example/y",
            "//cdn.example/y",
            "y",
            "file:///etc/passwd",
        ] {
            assert!(resolve("https://a.example/x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_not_shown() {
        assert_eq!(without_query("https://a/b?sig=secret"), "https://a/b");
        assert_eq!(without_query("https://a/b"), "https://a/b");
    }
}
