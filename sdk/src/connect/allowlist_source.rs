//! The allowlist a document names: where it lives, who published it, and
//! its bytes, checked against the document's SHA-256 before they are parsed.
//!
//! The document's `allowlist.url` is normally a release asset of the image
//! publisher, `https://HOST/OWNER/REPO/releases/download/TAG/NAME`. When HOST
//! is the web host of the GitHub instance the verifier configured
//! (`github.com` for `api.github.com`; the API's own host and port for a
//! GitHub Enterprise Server or a test server), the asset is fetched through
//! that instance's API, with the verifier's own scheme, token and limits, and
//! the publisher is known (`OWNER/REPO`). Any other URL is fetched with a
//! plain HTTPS GET and has no known publisher. Either way the bytes count
//! only if they hash to the document's `allowlist.sha256`.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};
use ureq::http::Uri;

use crate::allowlist::{Allowlist, MAX_ALLOWLIST_BYTES};
use crate::attestation::AllowlistRef;
use crate::github::{GitHub, GithubError, RepoName};

use super::http::PlainHttps;
use super::{ConnectError, ConnectOptions};

/// The public GitHub API host, whose web host is `github.com`.
const PUBLIC_API_HOST: &str = "api.github.com";
const PUBLIC_WEB_HOST: &str = "github.com";

/// A verified allowlist and where it came from.
#[derive(Debug)]
pub(crate) struct ObtainedAllowlist {
    /// The parsed list.
    pub(crate) allowlist: Allowlist,
    /// The publishing repo, when the URL is a release asset on the configured GitHub.
    pub(crate) publisher: Option<RepoName>,
    /// Whether the publisher was checked against the options' publishers.
    pub(crate) publisher_pinned: bool,
    /// Whether the bytes came from the local override file.
    pub(crate) from_file: bool,
    /// Where the bytes came from (the URL or the file), for messages.
    pub(crate) origin: String,
}

/// Where the document's allowlist URL points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    /// A release asset on the configured GitHub instance.
    ReleaseAsset {
        publisher: RepoName,
        tag: String,
        name: String,
    },
    /// Somewhere else.
    Web,
}

/// Fetch (or read from the override file) the allowlist `reference` names,
/// check its publisher and SHA-256, and parse it.
pub(crate) fn obtain(
    reference: &AllowlistRef,
    options: &ConnectOptions,
    github: &GitHub,
    plain: &mut PlainHttps,
) -> Result<ObtainedAllowlist, ConnectError> {
    let url = &reference.url;
    let location = locate(url, github.base_url())?;
    let publisher = match &location {
        Location::ReleaseAsset { publisher, .. } => Some(publisher.clone()),
        Location::Web => None,
    };
    // Which images the verifier trusts, in order: its own allowlist file,
    // its pinned list (`policy.allowlist`), or lists published by one of
    // its publishers. With none of them nothing says which images are
    // genuine, so the verification stops here.
    let publisher_pinned = if options.allowlist_override.is_some() {
        false
    } else if options.allowlist_publishers.is_empty() {
        if options.policy.allowlist.is_none() {
            return Err(ConnectError::InvalidOptions {
                option: "allowlist_publishers",
                problem: "empty, and neither an allowlist file (allowlist_override) nor a \
                          pinned allowlist (policy.allowlist) is given: nothing says which \
                          images to trust"
                    .to_owned(),
            });
        }
        false
    } else {
        check_publisher(url, publisher.as_ref(), &options.allowlist_publishers)?;
        true
    };
    let max = u64::try_from(MAX_ALLOWLIST_BYTES).unwrap_or(u64::MAX);
    let (bytes, origin) = match (&options.allowlist_override, &location) {
        (Some(path), _) => (read_capped(path, max)?, path.display().to_string()),
        (
            None,
            Location::ReleaseAsset {
                publisher,
                tag,
                name,
            },
        ) => (
            download_asset(github, publisher, tag, name, max)?,
            url.clone(),
        ),
        (None, Location::Web) => {
            let bytes = plain
                .get(url, max)
                .map_err(|problem| ConnectError::AllowlistFetch {
                    url: url.clone(),
                    problem,
                })?;
            (bytes, url.clone())
        }
    };
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if actual != reference.sha256 {
        return Err(ConnectError::AllowlistDigest {
            origin,
            expected: hex::encode(reference.sha256),
            actual: hex::encode(actual),
        });
    }
    let allowlist = Allowlist::from_json(&bytes).map_err(|source| ConnectError::Allowlist {
        origin: origin.clone(),
        source,
    })?;
    Ok(ObtainedAllowlist {
        allowlist,
        publisher,
        publisher_pinned,
        from_file: options.allowlist_override.is_some(),
        origin,
    })
}

/// The allowlist at `url`, which must be a release asset of one of the
/// options' publishers on the configured GitHub, and the SHA-256 of its
/// bytes. For a deployer that names no file of its own.
pub(crate) fn published(
    url: &str,
    options: &ConnectOptions,
    github: &GitHub,
) -> Result<(Allowlist, [u8; 32]), ConnectError> {
    if options.allowlist_publishers.is_empty() {
        return Err(ConnectError::InvalidOptions {
            option: "allowlist_publishers",
            problem: format!("empty: nothing says who may publish the allowlist {url}"),
        });
    }
    let Location::ReleaseAsset {
        publisher,
        tag,
        name,
    } = locate(url, github.base_url())?
    else {
        return Err(ConnectError::UntrustedAllowlist {
            url: url.to_owned(),
            publisher: None,
            trusted: options
                .allowlist_publishers
                .iter()
                .map(RepoName::to_string)
                .collect(),
        });
    };
    check_publisher(url, Some(&publisher), &options.allowlist_publishers)?;
    let max = u64::try_from(MAX_ALLOWLIST_BYTES).unwrap_or(u64::MAX);
    let bytes = download_asset(github, &publisher, &tag, &name, max)?;
    let allowlist = Allowlist::from_json(&bytes).map_err(|source| ConnectError::Allowlist {
        origin: url.to_owned(),
        source,
    })?;
    Ok((allowlist, Sha256::digest(&bytes).into()))
}

/// The verifier's own allowlist file, parsed, and the SHA-256 of its bytes.
#[cfg(feature = "agent-client")]
pub(crate) fn from_file(path: &Path) -> Result<(Allowlist, [u8; 32]), ConnectError> {
    let max = u64::try_from(MAX_ALLOWLIST_BYTES).unwrap_or(u64::MAX);
    let bytes = read_capped(path, max)?;
    let allowlist = Allowlist::from_json(&bytes).map_err(|source| ConnectError::Allowlist {
        origin: path.display().to_string(),
        source,
    })?;
    Ok((allowlist, Sha256::digest(&bytes).into()))
}

fn check_publisher(
    url: &str,
    publisher: Option<&RepoName>,
    trusted: &[RepoName],
) -> Result<(), ConnectError> {
    // GitHub names are case-insensitive.
    let is_trusted = |p: &RepoName| {
        trusted
            .iter()
            .any(|t| t.to_string().eq_ignore_ascii_case(&p.to_string()))
    };
    if publisher.is_some_and(is_trusted) {
        return Ok(());
    }
    Err(ConnectError::UntrustedAllowlist {
        url: url.to_owned(),
        publisher: publisher.map(RepoName::to_string),
        trusted: trusted.iter().map(RepoName::to_string).collect(),
    })
}

/// Scheme-less origin: the document's URL is `https` by format, while the
/// verifier reaches its configured GitHub with whatever scheme it chose.
#[derive(Debug, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    fn of(uri: &Uri) -> Option<HostPort> {
        let default_port = match uri.scheme_str()? {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        Some(HostPort {
            host: uri.host()?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default_port),
        })
    }
}

/// Where `url` points, relative to the GitHub instance whose API is `api_base`.
fn locate(url: &str, api_base: &str) -> Result<Location, ConnectError> {
    let bad = |problem: String| ConnectError::AllowlistUrl {
        url: url.to_owned(),
        problem,
    };
    let uri: Uri = url.parse().map_err(|e| bad(format!("not a URL: {e}")))?;
    let target = HostPort::of(&uri).ok_or_else(|| bad("not an absolute http(s) URL".to_owned()))?;
    let github_web = api_base
        .parse::<Uri>()
        .ok()
        .as_ref()
        .and_then(HostPort::of)
        .map(|mut origin| {
            if origin.host == PUBLIC_API_HOST {
                origin.host = PUBLIC_WEB_HOST.to_owned();
            }
            origin
        });
    if github_web.as_ref() != Some(&target) {
        return Ok(Location::Web);
    }
    let shape = "a release asset URL on the configured GitHub must be \
                 /OWNER/REPO/releases/download/TAG/NAME";
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (owner, repo, tag_and_name) = match segments.as_slice() {
        [owner, repo, "releases", "download", rest @ ..] if rest.len() >= 2 => {
            (*owner, *repo, rest)
        }
        _ => return Err(bad(shape.to_owned())),
    };
    let (name, tag) = tag_and_name
        .split_last()
        .ok_or_else(|| bad(shape.to_owned()))?;
    let decode = |part: &str| percent_decode(part).map_err(|p| bad(format!("{shape}: {p}")));
    let tag = tag
        .iter()
        .map(|segment| decode(segment))
        .collect::<Result<Vec<_>, _>>()?
        .join("/");
    let name = decode(name)?;
    if tag.is_empty() || name.is_empty() {
        return Err(bad(shape.to_owned()));
    }
    let publisher =
        RepoName::parse(&format!("{owner}/{repo}")).map_err(|e| bad(format!("publisher: {e}")))?;
    Ok(Location::ReleaseAsset {
        publisher,
        tag,
        name,
    })
}

/// Decode `%XX` escapes in one path segment.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            bytes.push(byte);
            rest = tail;
            continue;
        }
        let escape = tail
            .get(..2)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok())
            .ok_or_else(|| format!("bad %-escape in {text:?}"))?;
        bytes.push(escape);
        rest = tail.get(2..).unwrap_or_default();
    }
    String::from_utf8(bytes).map_err(|_| format!("{text:?} decodes to invalid UTF-8"))
}

fn download_asset(
    github: &GitHub,
    publisher: &RepoName,
    tag: &str,
    name: &str,
    max: u64,
) -> Result<Vec<u8>, ConnectError> {
    let what = format!("allowlist {name:?} of release {tag:?} of {publisher}");
    let download_error = |source| ConnectError::Download {
        what: what.clone(),
        source,
    };
    let release = github
        .release_by_tag(publisher, tag)
        .map_err(download_error)?;
    let asset = release
        .assets
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| download_error(GithubError::NotFound(format!("asset {name:?}"))))?;
    github
        .download_asset(publisher, asset.id, max)
        .map_err(download_error)
}

/// A local file of at most `max` bytes (checked before reading it whole).
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ConnectError> {
    let problem = |problem: String| ConnectError::AllowlistFile {
        path: path.to_owned(),
        problem,
    };
    let file = File::open(path).map_err(|e| problem(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| problem(e.to_string()))?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > max) {
        return Err(problem(format!("over the {max}-byte limit")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(publisher: &str, tag: &str, name: &str) -> Location {
        Location::ReleaseAsset {
            publisher: publisher.parse().unwrap(),
            tag: tag.to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn github_com_assets_are_fetched_through_the_api() {
        let api = "https://api.github.com";
        assert_eq!(
            locate(
                "https://github.com/acme/ee-image/releases/download/v1.2.0/allowlist.json",
                api
            )
            .unwrap(),
            asset("acme/ee-image", "v1.2.0", "allowlist.json")
        );
        // Percent-encoded segments and a tag with a slash.
        assert_eq!(
            locate(
                "https://GitHub.com/acme/img/releases/download/release/v1%2B2/allow%20list.json",
                api
            )
            .unwrap(),
            asset("acme/img", "release/v1+2", "allow list.json")
        );
        // Other hosts are plain web URLs, with no known publisher.
        for other in [
            "https://api.github.com/acme/img/releases/download/v1/a.json",
            "https://github.com:8443/acme/img/releases/download/v1/a.json",
            "https://objects.example/acme/img/releases/download/v1/a.json",
        ] {
            assert_eq!(locate(other, api).unwrap(), Location::Web, "{other}");
        }
    }

    #[test]
    fn enterprise_and_test_servers_match_on_host_and_port() {
        assert_eq!(
            locate(
                "https://ghe.example/acme/img/releases/download/v1/a.json",
                "https://ghe.example/api/v3"
            )
            .unwrap(),
            asset("acme/img", "v1", "a.json")
        );
        // A test server reached over http: the https URL names its host and port.
        assert_eq!(
            locate(
                "https://127.0.0.1:4321/acme/img/releases/download/v1/a.json",
                "http://127.0.0.1:4321/api/v3"
            )
            .unwrap(),
            asset("acme/img", "v1", "a.json")
        );
        assert_eq!(
            locate(
                "https://127.0.0.1:4322/acme/img/releases/download/v1/a.json",
                "http://127.0.0.1:4321/api/v3"
            )
            .unwrap(),
            Location::Web
        );
    }

    #[test]
    fn other_paths_on_the_github_host_are_refused() {
        for bad in [
            "https://github.com/acme/img/raw/main/allowlist.json",
            "https://github.com/acme/img/releases/download/v1",
            "https://github.com/acme/img/releases/download//a.json",
            "https://github.com/-acme/img/releases/download/v1/a.json",
            "https://github.com/acme/img/releases/download/v1/a%zz.json",
        ] {
            let err = locate(bad, "https://api.github.com").unwrap_err();
            assert!(
                matches!(err, ConnectError::AllowlistUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn publishers_compare_case_insensitively() {
        let trusted: Vec<RepoName> = vec!["Acme/EE-Image".parse().unwrap()];
        let publisher: RepoName = "acme/ee-image".parse().unwrap();
        check_publisher("u", Some(&publisher), &trusted).unwrap();
        // No trusted publisher trusts no one (the caller refuses earlier,
        // naming the option; this is the last line).
        assert!(check_publisher("u", Some(&publisher), &[]).is_err());
        assert!(check_publisher("u", None, &[]).is_err());
        let other: RepoName = "mallory/ee-image".parse().unwrap();
        let err = check_publisher("u", Some(&other), &trusted).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allowlist u is published by mallory/ee-image, not by a trusted publisher (Acme/EE-Image)"
        );
        assert!(matches!(
            check_publisher("u", None, &trusted),
            Err(ConnectError::UntrustedAllowlist {
                publisher: None,
                ..
            })
        ));
    }
}
