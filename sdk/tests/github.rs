//! The GitHub client against the local GitHub-compatible test server.

#![cfg(feature = "fetch")]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use easyenclave::github::{
    GitHub, GithubError, NewRelease, PermissionLevel, Permissions, Release, RepoName, RetryPolicy,
    Timeouts,
};
use ee_testkit::github_server::{
    GithubServer, LoggedRequest, Permission, ServerConfig, STORAGE_PATH_PREFIX,
};
use sha2::{Digest, Sha256};

/// alice owns both repos; bob may read the private one; dave may write the
/// public one; carol has no grants.
fn config() -> ServerConfig {
    ServerConfig::default()
        .with_token("t-alice", "alice")
        .with_token("t-bob", "bob")
        .with_token("t-carol", "carol")
        .with_token("t-dave", "dave")
        .with_repo("alice/app", false)
        .with_repo("alice/secret", true)
        .with_permission("alice/secret", "bob", Permission::Read)
        .with_permission("alice/app", "dave", Permission::Write)
}

fn start() -> GithubServer {
    GithubServer::start(config()).unwrap()
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

fn client(server: &GithubServer, token: Option<&str>) -> GitHub {
    let github = GitHub::new(&server.base_url())
        .unwrap()
        .with_retry(quick_retry());
    match token {
        Some(token) => github.with_token(token),
        None => github,
    }
}

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

fn release_with_asset(github: &GitHub, repo: &RepoName, tag: &str, data: &[u8]) -> (Release, u64) {
    let release = github.create_release(repo, &NewRelease::new(tag)).unwrap();
    let asset = github
        .upload_asset(&release, "bundle.tar", "application/x-tar", data)
        .unwrap();
    (release, asset.id)
}

fn requests_to(server: &GithubServer, prefix: &str) -> Vec<LoggedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .collect()
}

#[test]
fn releases_and_assets_round_trip() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");

    let created = alice
        .create_release(
            &app,
            &NewRelease {
                name: Some("First".into()),
                body: Some("notes".into()),
                ..NewRelease::new("v1")
            },
        )
        .unwrap();
    assert_eq!(created.tag_name, "v1");
    assert_eq!(created.name.as_deref(), Some("First"));
    assert_eq!(created.body.as_deref(), Some("notes"));
    assert!(!created.draft && !created.prerelease);
    assert!(created.published_at.is_some());
    assert!(
        created.upload_url.ends_with("/assets{?name,label}"),
        "{}",
        created.upload_url
    );
    assert_eq!(alice.release_by_tag(&app, "v1").unwrap(), created);
    assert_eq!(alice.release(&app, created.id).unwrap(), created);

    let data = b"tar bytes \x00\x01\xff".repeat(100);
    let asset = alice
        .upload_asset(&created, "bundle v1.tar", "application/x-tar", &data)
        .unwrap();
    assert_eq!(asset.name, "bundle v1.tar");
    assert_eq!(asset.size, data.len() as u64);
    assert_eq!(asset.content_type, "application/x-tar");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    assert_eq!(asset.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        alice.list_assets(&app, created.id).unwrap(),
        vec![asset.clone()]
    );
    assert_eq!(alice.asset(&app, asset.id).unwrap(), asset);
    assert_eq!(
        alice.release(&app, created.id).unwrap().assets,
        vec![asset.clone()]
    );
    assert_eq!(alice.download_asset(&app, asset.id, 1 << 20).unwrap(), data);

    // Anyone may read a public repository.
    let anonymous = client(&server, None);
    assert_eq!(
        anonymous.download_asset(&app, asset.id, 1 << 20).unwrap(),
        data
    );

    // Latest skips pre-releases and drafts.
    assert_eq!(alice.latest_release(&app).unwrap().id, created.id);
    let rc = NewRelease {
        prerelease: true,
        ..NewRelease::new("v2-rc1")
    };
    alice.create_release(&app, &rc).unwrap();
    let draft = NewRelease {
        draft: true,
        ..NewRelease::new("v3-draft")
    };
    let draft = alice.create_release(&app, &draft).unwrap();
    assert!(draft.draft && draft.published_at.is_none());
    assert_eq!(alice.latest_release(&app).unwrap().id, created.id);
    let v2 = alice.create_release(&app, &NewRelease::new("v2")).unwrap();
    assert_eq!(alice.latest_release(&app).unwrap().id, v2.id);

    // Drafts are visible to writers only.
    let tags = |list: Vec<Release>| list.into_iter().map(|r| r.tag_name).collect::<Vec<_>>();
    assert_eq!(
        tags(alice.list_releases(&app).unwrap()),
        ["v2", "v3-draft", "v2-rc1", "v1"]
    );
    assert_eq!(
        tags(anonymous.list_releases(&app).unwrap()),
        ["v2", "v2-rc1", "v1"]
    );
    assert!(matches!(
        anonymous.release(&app, draft.id),
        Err(GithubError::NotFound(_))
    ));

    alice.delete_release(&app, created.id).unwrap();
    assert!(matches!(
        alice.release_by_tag(&app, "v1"),
        Err(GithubError::NotFound(_))
    ));
    assert!(matches!(
        alice.asset(&app, asset.id),
        Err(GithubError::NotFound(_))
    ));
    assert!(matches!(
        alice.delete_release(&app, created.id),
        Err(GithubError::NotFound(_))
    ));
    assert_eq!(
        tags(alice.list_releases(&app).unwrap()),
        ["v2", "v3-draft", "v2-rc1"]
    );
}

#[test]
fn tags_and_asset_names_are_percent_encoded() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    let tag = "release/v1 beta?#%";
    let created = alice.create_release(&app, &NewRelease::new(tag)).unwrap();
    assert_eq!(alice.release_by_tag(&app, tag).unwrap().id, created.id);
    let asset = alice
        .upload_asset(&created, "a b&c=d+e.txt", "text/plain", b"x")
        .unwrap();
    assert_eq!(asset.name, "a b&c=d+e.txt");
    // The browser URL works too, and redirects to storage like the API URL.
    let agent = ureq::Agent::new_with_defaults();
    let body = agent
        .get(&asset.browser_download_url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(body, b"x");
}

#[test]
fn duplicates_are_validation_errors() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    let (release, _) = release_with_asset(&alice, &app, "v1", b"one");

    let tag_again = alice.create_release(&app, &NewRelease::new("v1"));
    match tag_again {
        Err(GithubError::Validation(message)) => {
            assert!(message.contains("Validation Failed"), "{message}");
            assert!(message.contains("tag_name already_exists"), "{message}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let name_again = alice.upload_asset(&release, "bundle.tar", "application/x-tar", b"two");
    match name_again {
        Err(GithubError::Validation(message)) => {
            assert!(message.contains("name already_exists"), "{message}")
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let empty_tag = alice.create_release(&app, &NewRelease::new(""));
    assert!(
        matches!(empty_tag, Err(GithubError::Validation(_))),
        "{empty_tag:?}"
    );
}

#[test]
fn storage_redirect_never_carries_the_token() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let secret = repo("alice/secret");
    let (_, asset_id) = release_with_asset(&alice, &secret, "v1", b"private bytes");
    let artifact_id = server
        .add_artifact("alice/secret", "bundle", b"PK zip".to_vec())
        .unwrap();
    assert_ne!(
        server.api_addr(),
        server.storage_addr(),
        "storage must be another origin"
    );

    server.clear_requests();
    assert_eq!(
        alice.download_asset(&secret, asset_id, 1024).unwrap(),
        b"private bytes"
    );
    assert_eq!(
        alice
            .download_artifact_zip(&secret, artifact_id, 1024)
            .unwrap(),
        b"PK zip"
    );

    let log = server.requests();
    let summary: Vec<(bool, bool, u16)> = log
        .iter()
        .map(|r| {
            (
                r.path.starts_with(STORAGE_PATH_PREFIX),
                r.authorization,
                r.status,
            )
        })
        .collect();
    // API call with the token (302), storage call without it (200), twice.
    assert_eq!(
        summary,
        [
            (false, true, 302),
            (true, false, 200),
            (false, true, 302),
            (true, false, 200)
        ],
        "{log:?}"
    );
}

#[test]
fn pagination_follows_link_headers_up_to_a_cap() {
    let server = start();
    let alice = client(&server, Some("t-alice")).with_pagination(2, 10);
    let app = repo("alice/app");
    for i in 1..=7 {
        alice
            .create_release(&app, &NewRelease::new(format!("v{i}")))
            .unwrap();
    }
    server.clear_requests();
    let tags: Vec<String> = alice
        .list_releases(&app)
        .unwrap()
        .into_iter()
        .map(|r| r.tag_name)
        .collect();
    assert_eq!(tags, ["v7", "v6", "v5", "v4", "v3", "v2", "v1"]);
    assert_eq!(
        requests_to(&server, "/api/v3/repos/alice/app/releases").len(),
        4
    );

    let capped = client(&server, Some("t-alice")).with_pagination(2, 3);
    match capped.list_releases(&app) {
        Err(GithubError::TooLarge { limit, .. }) => assert_eq!(limit, "3 pages"),
        other => panic!("expected TooLarge, got {other:?}"),
    }

    // Artifact lists page the same way and keep the name filter across pages.
    for name in ["bundle", "other", "bundle", "bundle"] {
        server
            .add_artifact("alice/app", name, b"zip".to_vec())
            .unwrap();
    }
    let bundles = alice.list_artifacts(&app, Some("bundle")).unwrap();
    assert_eq!(bundles.len(), 3);
    assert!(bundles.iter().all(|a| a.name == "bundle"));
    assert_eq!(alice.list_artifacts(&app, None).unwrap().len(), 4);
}

#[test]
fn status_codes_map_to_typed_errors() {
    let server = start();
    let app = repo("alice/app");
    let secret = repo("alice/secret");
    let alice = client(&server, Some("t-alice"));
    let bob = client(&server, Some("t-bob"));
    let carol = client(&server, Some("t-carol"));
    let anonymous = client(&server, None);
    alice
        .create_release(&secret, &NewRelease::new("v1"))
        .unwrap();

    match alice.release_by_tag(&app, "nope") {
        Err(GithubError::NotFound(what)) => assert!(what.contains("nope"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client(&server, Some("t-wrong")).current_user() {
        Err(GithubError::Unauthorized(message)) => assert_eq!(message, "Bad credentials"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // A bad token fails even on public data, as on GitHub.
    let wrong_on_public = client(&server, Some("t-wrong")).list_releases(&app);
    assert!(matches!(wrong_on_public, Err(GithubError::Unauthorized(_))));
    match anonymous.current_user() {
        Err(GithubError::Unauthorized(message)) => assert_eq!(message, "Requires authentication"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(matches!(
        anonymous.create_release(&app, &NewRelease::new("v9")),
        Err(GithubError::Unauthorized(_))
    ));
    match carol.create_release(&app, &NewRelease::new("v9")) {
        Err(GithubError::Forbidden(message)) => {
            assert!(message.contains("push access"), "{message}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    // Private repositories are invisible without read permission.
    assert!(matches!(
        carol.list_releases(&secret),
        Err(GithubError::NotFound(_))
    ));
    assert!(matches!(
        anonymous.release_by_tag(&secret, "v1"),
        Err(GithubError::NotFound(_))
    ));
    assert_eq!(bob.release_by_tag(&secret, "v1").unwrap().tag_name, "v1");
    assert!(matches!(
        bob.create_release(&secret, &NewRelease::new("v2")),
        Err(GithubError::Forbidden(_))
    ));
    assert!(matches!(
        alice.list_releases(&repo("alice/none")),
        Err(GithubError::NotFound(_))
    ));
    // A writer who is not the owner may publish.
    client(&server, Some("t-dave"))
        .create_release(&app, &NewRelease::new("v2"))
        .unwrap();
}

#[test]
fn identity_and_permissions() {
    let server = start();
    let app = repo("alice/app");
    let secret = repo("alice/secret");
    let alice = client(&server, Some("t-alice"));
    assert_eq!(alice.current_user().unwrap().login, "alice");
    assert!(
        !format!("{alice:?}").contains("t-alice"),
        "token printed by Debug"
    );
    assert_eq!(
        client(&server, Some("t-bob")).current_user().unwrap().login,
        "bob"
    );

    let permissions =
        |token: Option<&str>, repo: &RepoName| client(&server, token).repo_permissions(repo);
    let all = Permissions {
        admin: true,
        push: true,
        pull: true,
    };
    let writer = Permissions {
        admin: false,
        push: true,
        pull: true,
    };
    let reader = Permissions {
        admin: false,
        push: false,
        pull: true,
    };
    assert_eq!(permissions(Some("t-alice"), &app).unwrap(), all);
    assert_eq!(permissions(Some("t-dave"), &app).unwrap(), writer);
    assert_eq!(permissions(Some("t-carol"), &app).unwrap(), reader);
    assert_eq!(permissions(None, &app).unwrap(), reader);
    assert_eq!(permissions(Some("t-bob"), &secret).unwrap(), reader);
    assert!(matches!(
        permissions(Some("t-carol"), &secret),
        Err(GithubError::NotFound(_))
    ));

    assert_eq!(
        alice.collaborator_permission(&app, "dave").unwrap(),
        PermissionLevel::Write
    );
    assert_eq!(
        alice.collaborator_permission(&app, "alice").unwrap(),
        PermissionLevel::Admin
    );
    assert_eq!(
        alice.collaborator_permission(&secret, "bob").unwrap(),
        PermissionLevel::Read
    );
    assert_eq!(
        alice.collaborator_permission(&secret, "carol").unwrap(),
        PermissionLevel::None
    );
    assert!(matches!(
        alice.collaborator_permission(&secret, "mallory"),
        Err(GithubError::NotFound(_))
    ));
}

#[test]
fn artifacts_metadata_download_and_expiry() {
    let server = start();
    let app = repo("alice/app");
    let secret = repo("alice/secret");
    let zip = b"PK\x03\x04 artifact".to_vec();
    let id = server
        .add_artifact("alice/app", "bundle", zip.clone())
        .unwrap();
    let anonymous = client(&server, None);

    let artifact = anonymous.artifact(&app, id).unwrap();
    assert_eq!(artifact.name, "bundle");
    assert_eq!(artifact.size_in_bytes, zip.len() as u64);
    assert!(!artifact.expired);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&zip)));
    assert_eq!(artifact.digest.as_deref(), Some(digest.as_str()));
    assert!(artifact
        .archive_download_url
        .ends_with(&format!("/actions/artifacts/{id}/zip")));
    assert_eq!(
        anonymous.list_artifacts(&app, None).unwrap(),
        vec![artifact]
    );
    assert_eq!(
        anonymous.download_artifact_zip(&app, id, 1024).unwrap(),
        zip
    );

    server.expire_artifact(id).unwrap();
    assert!(anonymous.artifact(&app, id).unwrap().expired);
    match anonymous.download_artifact_zip(&app, id, 1024) {
        Err(GithubError::Gone { message, .. }) => assert_eq!(message, "Artifact has expired"),
        other => panic!("expected Gone, got {other:?}"),
    }

    let private_id = server
        .add_artifact("alice/secret", "bundle", zip.clone())
        .unwrap();
    assert!(matches!(
        anonymous.artifact(&secret, private_id),
        Err(GithubError::NotFound(_))
    ));
    // Ids are per repository: the private artifact is not reachable through app.
    assert!(matches!(
        anonymous.artifact(&app, private_id),
        Err(GithubError::NotFound(_))
    ));
    let bob = client(&server, Some("t-bob"));
    assert_eq!(
        bob.download_artifact_zip(&secret, private_id, 1024)
            .unwrap(),
        zip
    );
}

#[test]
fn idempotent_requests_retry_then_succeed() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    let (release, asset_id) = release_with_asset(&alice, &app, "v1", b"payload");

    server.clear_requests();
    server.fail_next("/api/v3/repos/alice/app/releases/tags/", 503, 2);
    let started = Instant::now();
    assert_eq!(alice.release_by_tag(&app, "v1").unwrap().id, release.id);
    // Backoff: 20 ms, then 40 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);

    // A failing storage hop restarts the download from the API.
    server.clear_requests();
    server.fail_next(STORAGE_PATH_PREFIX, 502, 1);
    assert_eq!(
        alice.download_asset(&app, asset_id, 1024).unwrap(),
        b"payload"
    );
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [302, 502, 302, 200]);

    server.fail_next("/api/v3/repos/alice/app/releases/", 500, 1);
    alice.delete_release(&app, release.id).unwrap();
    assert!(matches!(
        alice.release(&app, release.id),
        Err(GithubError::NotFound(_))
    ));
}

#[test]
fn retries_give_up_with_the_path_and_last_status() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    server.fail_next("/api/v3/repos/alice/app/releases/latest", 502, 10);
    match alice.latest_release(&app) {
        Err(GithubError::Server {
            path,
            status,
            attempts,
        }) => {
            assert_eq!(path, "/api/v3/repos/alice/app/releases/latest");
            assert_eq!((status, attempts), (502, 3));
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn posts_are_not_retried() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    server.fail_next("/api/v3/repos/alice/app/releases", 503, 1);
    let failed = alice.create_release(&app, &NewRelease::new("v1"));
    assert!(
        matches!(
            failed,
            Err(GithubError::Server {
                status: 503,
                attempts: 1,
                ..
            })
        ),
        "{failed:?}"
    );
    assert_eq!(server.requests().len(), 1);
    alice.create_release(&app, &NewRelease::new("v1")).unwrap();
}

#[test]
fn downloads_are_capped() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let app = repo("alice/app");
    let data = vec![7u8; 1000];
    let (_, asset_id) = release_with_asset(&alice, &app, "v1", &data);
    assert!(matches!(
        alice.download_asset(&app, asset_id, 999),
        Err(GithubError::TooLarge { .. })
    ));
    assert_eq!(alice.download_asset(&app, asset_id, 1000).unwrap(), data);
    let id = server
        .add_artifact("alice/app", "big", data.clone())
        .unwrap();
    assert!(matches!(
        alice.download_artifact_zip(&app, id, 10),
        Err(GithubError::TooLarge { .. })
    ));
}

#[test]
fn request_bodies_over_the_server_cap_get_413() {
    let server = GithubServer::start(config().with_max_body_bytes(100)).unwrap();
    let alice = client(&server, Some("t-alice"));
    let release = alice
        .create_release(&repo("alice/app"), &NewRelease::new("v1"))
        .unwrap();
    let too_big = alice.upload_asset(&release, "big", "application/octet-stream", &[0; 101]);
    assert!(
        matches!(too_big, Err(GithubError::Rejected { status: 413, .. })),
        "{too_big:?}"
    );
    alice
        .upload_asset(&release, "fits", "application/octet-stream", &[0; 100])
        .unwrap();
}

#[test]
fn upload_url_must_stay_on_the_api_origin() {
    let server = start();
    let alice = client(&server, Some("t-alice"));
    let mut release = alice
        .create_release(&repo("alice/app"), &NewRelease::new("v1"))
        .unwrap();
    release.upload_url = "http://127.0.0.2:9/repos/alice/app/releases/1/assets{?name,label}".into();
    server.clear_requests();
    let result = alice.upload_asset(&release, "x", "text/plain", b"x");
    assert!(
        matches!(result, Err(GithubError::UntrustedOrigin { .. })),
        "{result:?}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn connection_errors_are_retried_then_reported() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let github = GitHub::new(&format!("http://127.0.0.1:{port}/api/v3"))
        .unwrap()
        .with_retry(quick_retry());
    match github.current_user() {
        Err(GithubError::Transport { path, attempts, .. }) => {
            assert_eq!(path, "/api/v3/user");
            assert_eq!(attempts, 3);
        }
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[test]
fn read_timeout_applies() {
    // Accepts connections but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let github = GitHub::new(&format!("http://{addr}"))
        .unwrap()
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_millis(200),
        })
        .with_retry(RetryPolicy {
            attempts: 1,
            ..quick_retry()
        });
    let started = Instant::now();
    let result = github.current_user();
    assert!(
        matches!(result, Err(GithubError::Transport { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("github-state.json");
    let app = repo("alice/app");
    let (asset_id, artifact_id) = {
        let server = GithubServer::start(config().with_state_file(&state)).unwrap();
        let alice = client(&server, Some("t-alice"));
        let (_, asset_id) = release_with_asset(&alice, &app, "v1", b"kept");
        (
            asset_id,
            server
                .add_artifact("alice/app", "a", b"zip".to_vec())
                .unwrap(),
        )
    };
    let server = GithubServer::start(config().with_state_file(&state)).unwrap();
    let alice = client(&server, Some("t-alice"));
    assert_eq!(alice.release_by_tag(&app, "v1").unwrap().assets.len(), 1);
    assert_eq!(alice.download_asset(&app, asset_id, 100).unwrap(), b"kept");
    assert_eq!(
        alice.download_artifact_zip(&app, artifact_id, 100).unwrap(),
        b"zip"
    );
    // New ids continue after the stored ones.
    let next = alice.create_release(&app, &NewRelease::new("v2")).unwrap();
    assert!(next.id > artifact_id);
}

/// The URLs in answers follow the Host the client used: a VM behind QEMU's
/// user network asks for `10.0.2.2:PORT` and must be sent back there (for
/// uploads and the storage redirect), while host-side clients keep
/// `127.0.0.1`.
#[test]
fn urls_follow_the_request_host() {
    use std::io::{Read, Write};
    let server = start();
    let github = client(&server, Some("t-alice"));
    let (_, asset_id) = release_with_asset(&github, &repo("alice/app"), "v1", b"data");
    let get = |host: &str, path: &str| {
        let mut stream = std::net::TcpStream::connect(server.api_addr()).unwrap();
        write!(
            stream,
            "GET /api/v3{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\
             Authorization: token t-alice\r\nAccept: application/octet-stream\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let port = server.api_addr().port();
    let storage_port = server.storage_addr().port();

    let releases = get(&format!("10.0.2.2:{port}"), "/repos/alice/app/releases");
    assert!(
        releases.contains(&format!(
            "\"upload_url\":\"http://10.0.2.2:{port}/api/uploads/"
        )),
        "{releases}"
    );
    assert!(!releases.contains("127.0.0.1"), "{releases}");
    let download = get(
        &format!("10.0.2.2:{port}"),
        &format!("/repos/alice/app/releases/assets/{asset_id}"),
    );
    assert!(
        download.contains(&format!("Location: http://10.0.2.2:{storage_port}/")),
        "{download}"
    );
    // The host's own client still gets loopback URLs, and they work.
    let local = github
        .download_asset(&repo("alice/app"), asset_id, 1024)
        .unwrap();
    assert_eq!(local, b"data");
    // A Host header that is not a plain host[:port] is not echoed into URLs.
    let odd = get("evil.example/path", "/repos/alice/app/releases");
    assert!(
        odd.contains(&format!("http://{}/api/uploads/", server.api_addr())),
        "{odd}"
    );
}

/// A repo with GitHub's immutable releases: the old publish-then-upload
/// flow is refused with 422; draft, upload, publish works, and the
/// published release then keeps its assets and tag.
#[test]
fn immutable_releases_take_assets_only_as_drafts() {
    let server = GithubServer::start(config().with_immutable_releases("alice/app")).unwrap();
    let github = client(&server, Some("t-alice"));
    let app = repo("alice/app");

    let published = github.create_release(&app, &NewRelease::new("v1")).unwrap();
    let err = github
        .upload_asset(&published, "attestation.json", "application/json", b"{}")
        .unwrap_err();
    match err {
        GithubError::Validation(message) => {
            assert!(message.contains("immutable release"), "{message}")
        }
        other => panic!("expected 422, got {other:?}"),
    }

    let draft = github
        .create_release(
            &app,
            &NewRelease {
                draft: true,
                ..NewRelease::new("v2")
            },
        )
        .unwrap();
    assert!(draft.draft && draft.published_at.is_none());
    github
        .upload_asset(&draft, "attestation.json", "application/json", b"{}")
        .unwrap();
    assert!(
        github.release_by_tag(&app, "v2").is_err(),
        "a draft is not found by tag"
    );
    let done = github.publish_release(&app, draft.id).unwrap();
    assert!(!done.draft && done.published_at.is_some());
    assert_eq!(done.assets.len(), 1);
    assert_eq!(github.release_by_tag(&app, "v2").unwrap().assets.len(), 1);
    assert!(matches!(
        github.upload_asset(&done, "late.txt", "text/plain", b"x"),
        Err(GithubError::Validation(_))
    ));
    let back_to_draft = easyenclave::github::ReleaseUpdate {
        draft: Some(true),
        ..Default::default()
    };
    assert!(matches!(
        github.update_release(&app, done.id, &back_to_draft),
        Err(GithubError::Validation(_))
    ));

    // Without the setting, a published release still takes assets.
    let github = client(&server, Some("t-alice"));
    let secret = repo("alice/secret");
    let release = github
        .create_release(&secret, &NewRelease::new("v1"))
        .unwrap();
    github
        .upload_asset(&release, "a.json", "application/json", b"{}")
        .unwrap();
}

/// A workflow's GITHUB_TOKEN: no user behind it (403 on /user), but it may
/// create releases and upload assets in its own repository only.
#[test]
fn installation_tokens_are_no_users_but_can_publish() {
    let server = GithubServer::start(config().with_installation_token(
        "ghs-app",
        &["alice/secret"],
        Permission::Write,
    ))
    .unwrap();
    let github = client(&server, Some("ghs-app"));
    match github.current_user().unwrap_err() {
        GithubError::Forbidden(message) => {
            assert_eq!(message, "Resource not accessible by integration")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let secret = repo("alice/secret");
    let draft = github
        .create_release(
            &secret,
            &NewRelease {
                draft: true,
                ..NewRelease::new("deploy-1")
            },
        )
        .unwrap();
    let asset = github
        .upload_asset(&draft, "attestation.json", "application/json", b"{}")
        .unwrap();
    assert_eq!(asset.name, "attestation.json");
    let published = github.publish_release(&secret, draft.id).unwrap();
    assert!(!published.draft);
    // Another repository: readable when public, never writable.
    assert!(matches!(
        github.create_release(&repo("alice/app"), &NewRelease::new("x")),
        Err(GithubError::Forbidden(m)) if m.contains("integration")
    ));
    github.list_releases(&repo("alice/app")).unwrap();
}

/// The OIDC issuer: its JWKS verifies the tokens it signs, through the
/// SDK's JWKS cache; the Actions runtime endpoint issues a job's token with
/// the requested audience.
#[test]
fn the_oidc_issuer_serves_keys_and_job_tokens() {
    use easyenclave::oidc::{audience_for_spki, Expected, FetchOptions, JwksCache};
    use ee_testkit::github_server::ActionsJob;

    let job = ActionsJob {
        repository: "alice/app".into(),
        git_ref: "refs/heads/main".into(),
        environment: Some("production".into()),
        actor: "alice".into(),
    };
    let server = GithubServer::start(config().with_actions_job("req-1", job.clone())).unwrap();
    let issuer = server.oidc_issuer();
    assert!(issuer.ends_with("/_services/token"), "{issuer}");
    let audience = audience_for_spki(b"agent");

    let url = format!("{issuer}/actions?api-version=2.0&audience={audience}");
    let answer: serde_json::Value = ureq_get_json(&url, "req-1");
    let token = answer["value"].as_str().unwrap();

    let cache = JwksCache::new(&issuer, FetchOptions::default());
    let expected = Expected {
        issuer: issuer.clone(),
        repository: "alice/app".into(),
        audience: audience.clone(),
        allowed_refs: vec!["refs/heads/main".into()],
        allowed_environments: vec!["production".into()],
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        skew_secs: 60,
    };
    let claims = cache.verify(token, &expected).unwrap();
    assert_eq!(claims.environment.as_deref(), Some("production"));
    assert_eq!(claims.actor.as_deref(), Some("alice"));
    // Cached: a second check fetches nothing.
    server.clear_requests();
    cache.verify(token, &expected).unwrap();
    assert!(server.requests().is_empty());

    let signed = server
        .sign_oidc(&server.oidc_claims(&job, &audience))
        .unwrap();
    cache.verify(&signed, &expected).unwrap();
}

/// `GET url` with a bearer token, as the Actions runtime is asked.
fn ureq_get_json(url: &str, token: &str) -> serde_json::Value {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap()
}

/// A token naming a key the cached JWKS lacks makes the cache fetch again
/// (the issuer may have rotated), but not more often than the minimum
/// interval; an unreachable issuer is an error naming the JWKS URL.
#[test]
fn the_jwks_cache_refetches_for_an_unknown_kid_at_most_so_often() {
    use easyenclave::oidc::{audience_for_spki, Expected, FetchOptions, JwksCache, OidcError};
    use ee_testkit::github_server::ActionsJob;
    use ee_testkit::oidc_signer::TestSigner;

    let server = start();
    let issuer = server.oidc_issuer();
    let audience = audience_for_spki(b"agent");
    let job = ActionsJob {
        repository: "alice/app".into(),
        git_ref: "refs/heads/main".into(),
        environment: None,
        actor: "alice".into(),
    };
    let claims = server.oidc_claims(&job, &audience);
    let expected = Expected {
        issuer: issuer.clone(),
        repository: "alice/app".into(),
        audience,
        allowed_refs: vec![],
        allowed_environments: vec![],
        now: claims["iat"].as_u64().unwrap(),
        skew_secs: 60,
    };
    let jwks_fetches =
        |server: &GithubServer| requests_to(server, "/_services/token/.well-known/jwks").len();
    let cache = JwksCache::new(
        &issuer,
        FetchOptions {
            min_refetch_interval: Duration::from_secs(3600),
            ..FetchOptions::default()
        },
    );
    cache
        .verify(&server.sign_oidc(&claims).unwrap(), &expected)
        .unwrap();
    assert_eq!(jwks_fetches(&server), 1);
    let rotated = TestSigner::stranger("rotated-key")
        .unwrap()
        .sign(&claims)
        .unwrap();
    let err = cache.verify(&rotated, &expected).unwrap_err();
    assert!(matches!(err, OidcError::UnknownKey { .. }), "{err}");
    assert!(err.to_string().contains(".well-known/jwks"), "{err}");
    // Fetched once more within the minimum interval? No: only once in all.
    cache.verify(&rotated, &expected).unwrap_err();
    assert_eq!(jwks_fetches(&server), 1, "the first fetch was just now");

    // With no throttle, an unknown kid triggers exactly one refetch.
    let cache = JwksCache::new(
        &issuer,
        FetchOptions {
            min_refetch_interval: Duration::ZERO,
            ..FetchOptions::default()
        },
    );
    server.clear_requests();
    cache
        .verify(&server.sign_oidc(&claims).unwrap(), &expected)
        .unwrap();
    cache.verify(&rotated, &expected).unwrap_err();
    assert_eq!(jwks_fetches(&server), 2);

    // An issuer that answers 404.
    let cache = JwksCache::new(&format!("{issuer}/nowhere"), FetchOptions::default());
    let err = cache
        .verify(&server.sign_oidc(&claims).unwrap(), &expected)
        .unwrap_err();
    assert_eq!(err.claim(), "jwks");
    assert!(
        err.to_string().contains("answered HTTP 404, expected 200"),
        "{err}"
    );
}
