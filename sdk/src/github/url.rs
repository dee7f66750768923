//! URL handling: the API base, origins (who may see the token), path-segment
//! encoding, `Link` pagination headers, redirect targets and upload templates.

use std::fmt;

use ureq::http::Uri;

use super::GithubError;

/// Scheme, host and port: the unit the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute http(s) URL; `None` for anything else.
    pub(crate) fn of(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let port = uri.port_u16().unwrap_or(default_port);
        Some(Origin { scheme, host, port })
    }

    /// Whether this origin uses TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The REST API root, e.g. `https://api.github.com` or `https://ghe.example/api/v3`.
#[derive(Debug, Clone)]
pub(crate) struct ApiBase {
    root: String,
    origin: Origin,
    /// Where `upload_url` may point: `uploads.github.com` for github.com,
    /// the API origin itself for GitHub Enterprise Server.
    upload_origin: Origin,
}

const PUBLIC_API: &str = "https://api.github.com";

impl ApiBase {
    /// Validates a base URL: absolute http(s), no query or fragment.
    pub(crate) fn parse(base: &str) -> Result<ApiBase, GithubError> {
        let invalid = |reason: &str| GithubError::InvalidUrl {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let root = base.trim_end_matches('/');
        if root.contains(['?', '#']) {
            return Err(invalid("a base URL has no query or fragment"));
        }
        let origin = Origin::of(root).ok_or_else(|| invalid("expected an absolute http(s) URL"))?;
        let upload_origin = if origin.scheme == "https" && origin.host == "api.github.com" {
            Origin {
                host: "uploads.github.com".to_owned(),
                ..origin.clone()
            }
        } else {
            origin.clone()
        };
        Ok(ApiBase {
            root: root.to_owned(),
            origin,
            upload_origin,
        })
    }

    /// The public github.com API.
    pub(crate) fn public() -> ApiBase {
        let https = |host: &str| Origin {
            scheme: "https".to_owned(),
            host: host.to_owned(),
            port: 443,
        };
        ApiBase {
            root: PUBLIC_API.to_owned(),
            origin: https("api.github.com"),
            upload_origin: https("uploads.github.com"),
        }
    }

    /// The base URL without a trailing slash.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// `root + path`; `path` starts with `/` and is already encoded.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    /// Checks that a URL taken from an API response (a `Link` header) stays on
    /// the API origin before the token is sent there.
    pub(crate) fn check_api_url(&self, url: &str) -> Result<(), GithubError> {
        self.check(url, &[&self.origin])
    }

    /// Checks that a release's `upload_url` points at the upload origin.
    pub(crate) fn check_upload_url(&self, url: &str) -> Result<(), GithubError> {
        self.check(url, &[&self.upload_origin, &self.origin])
    }

    fn check(&self, url: &str, allowed: &[&Origin]) -> Result<(), GithubError> {
        let origin = Origin::of(url).ok_or_else(|| GithubError::InvalidUrl {
            url: url.to_owned(),
            reason: "expected an absolute http(s) URL".to_owned(),
        })?;
        if allowed.iter().any(|a| **a == origin) {
            return Ok(());
        }
        let expected: Vec<String> = allowed.iter().map(|o| o.to_string()).collect();
        Err(GithubError::UntrustedOrigin {
            origin: origin.to_string(),
            expected: expected.join(", "),
        })
    }
}

pub(crate) use crate::percent::encode_component;

/// The path of a URL, for error messages (never the query, which may be a signature).
pub(crate) fn path_of(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => uri.path().to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let entry = entry.trim();
        let target = entry.strip_prefix('<')?;
        let (url, params) = target.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            let Some((key, value)) = param.trim().split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        is_next.then(|| url.to_owned())
    })
}

/// Resolves a `Location` header against the URL that answered with it.
/// Supports absolute URLs and absolute paths, which is what GitHub sends.
pub(crate) fn resolve_location(current: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    if Origin::of(location).is_some() {
        return Ok(location.to_owned());
    }
    let origin = Origin::of(current).ok_or("the redirecting URL has no origin")?;
    if let Some(rest) = location.strip_prefix("//") {
        let absolute = format!("{}://{rest}", origin.scheme);
        return match Origin::of(&absolute) {
            Some(_) => Ok(absolute),
            None => Err(format!("unusable Location {location:?}")),
        };
    }
    if location.starts_with('/') {
        let uri: Uri = current.parse().map_err(|_| "unparsable redirecting URL")?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        return Ok(format!("{}://{authority}{location}", origin.scheme));
    }
    Err(format!("unsupported Location {location:?}"))
}

/// Turns an `upload_url` template (`...{?name,label}`) into the URL for `name`.
pub(crate) fn upload_target(template: &str, name: &str) -> String {
    let base = template.split('{').next().unwrap_or(template);
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}name={}", encode_component(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_effective_port() {
        let a = Origin::of("https://API.github.com/x").unwrap();
        assert_eq!(a, Origin::of("https://api.github.com:443/y?z").unwrap());
        assert_ne!(a, Origin::of("http://api.github.com/").unwrap());
        assert_ne!(a, Origin::of("https://api.github.com:8443/").unwrap());
        assert_ne!(
            Origin::of("http://127.0.0.1:1000/").unwrap(),
            Origin::of("http://127.0.0.1:1001/").unwrap()
        );
        assert!(Origin::of("ftp://example.com/").is_none());
        assert!(Origin::of("/relative").is_none());
    }

    #[test]
    fn upload_origin_of_github_com_is_uploads_github_com() {
        let public = ApiBase::public();
        public
            .check_upload_url("https://uploads.github.com/repos/o/r/releases/1/assets")
            .unwrap();
        assert!(matches!(
            public.check_upload_url("https://evil.example/repos/o/r/releases/1/assets"),
            Err(GithubError::UntrustedOrigin { .. })
        ));
        assert!(public
            .check_api_url("https://uploads.github.com/x")
            .is_err());
        let ghes = ApiBase::parse("https://ghe.example/api/v3/").unwrap();
        assert_eq!(ghes.root(), "https://ghe.example/api/v3");
        ghes.check_upload_url("https://ghe.example/api/uploads/repos/o/r/releases/1/assets")
            .unwrap();
        assert!(ghes
            .check_upload_url("https://uploads.github.com/x")
            .is_err());
    }

    #[test]
    fn base_urls_are_validated() {
        for bad in [
            "api.github.com",
            "ftp://x/",
            "https://x/?a=1",
            "",
            "https://",
        ] {
            assert!(ApiBase::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("v1.0-rc_1~"), "v1.0-rc_1~");
        assert_eq!(encode_component("release/v1"), "release%2Fv1");
        assert_eq!(encode_component("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn link_header_next_is_found() {
        // The shape GitHub documents for paginated responses.
        let link = "<https://api.github.com/repositories/1300192/issues?page=2>; rel=\"prev\", \
                    <https://api.github.com/repositories/1300192/issues?page=4>; rel=\"next\", \
                    <https://api.github.com/repositories/1300192/issues?page=515>; rel=\"last\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
        assert_eq!(next_link("<https://x/?page=1>; rel=\"first\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn locations_resolve() {
        let cur = "http://127.0.0.1:9/api/v3/x";
        assert_eq!(
            resolve_location(cur, "/_storage/a?sig=1").unwrap(),
            "http://127.0.0.1:9/_storage/a?sig=1"
        );
        assert_eq!(
            resolve_location(cur, "https://objects.example/a").unwrap(),
            "https://objects.example/a"
        );
        assert_eq!(
            resolve_location(cur, "//cdn.example/a").unwrap(),
            "http://cdn.example/a"
        );
        assert!(resolve_location(cur, "relative/path").is_err());
        assert!(resolve_location(cur, "file:///etc/passwd").is_err());
    }

    #[test]
    fn upload_templates_expand() {
        assert_eq!(
            upload_target(
                "https://uploads.github.com/repos/o/r/releases/1/assets{?name,label}",
                "a b.tar"
            ),
            "https://uploads.github.com/repos/o/r/releases/1/assets?name=a%20b.tar"
        );
        assert_eq!(
            upload_target("http://h/x?y=1", "n"),
            "http://h/x?y=1&name=n"
        );
    }
}
