//! The storage side: short-lived signed URLs that asset and artifact
//! downloads redirect to, served from their own listener (a different origin,
//! as objects.githubusercontent.com is for api.github.com).

use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::state::Store;
use super::wire::{now, Incoming, Reply};

/// Path prefix of every storage URL.
pub const STORAGE_PATH_PREFIX: &str = "/_storage/";

/// What a storage URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blob {
    Asset,
    Artifact,
}

impl Blob {
    fn kind(self) -> &'static str {
        match self {
            Blob::Asset => "assets",
            Blob::Artifact => "artifacts",
        }
    }
}

/// Issues and checks signed storage URLs.
pub(super) struct Storage {
    ttl_secs: u64,
    secret: [u8; 32],
}

impl Storage {
    /// URLs stay valid for `ttl_secs`.
    pub fn new(ttl_secs: u64) -> Storage {
        Storage {
            ttl_secs,
            secret: fresh_secret(),
        }
    }

    /// A URL on `origin` (`http://host:port` of the storage listener) for
    /// `blob` `id`, valid for the configured lifetime.
    pub fn url(&self, origin: &str, blob: Blob, id: u64) -> String {
        let expires = now().saturating_add(self.ttl_secs);
        format!(
            "{origin}{STORAGE_PATH_PREFIX}{}/{id}?expires={expires}&sig={}",
            blob.kind(),
            self.sign(blob, id, expires)
        )
    }

    fn sign(&self, blob: Blob, id: u64, expires: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update(format!("{}\n{id}\n{expires}", blob.kind()));
        hex::encode(hasher.finalize())
    }

    /// Serves `GET /_storage/{assets|artifacts}/{id}?expires=..&sig=..`.
    pub fn handle(&self, store: &Store, req: &Incoming<'_>) -> Reply {
        // Like S3 and Azure, storage refuses a second credential next to the
        // signature, so a client that leaks its token here also fails.
        if req.header("authorization").is_some() {
            return Reply::text(400, "Only one auth mechanism allowed");
        }
        let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let (blob, id) = match segments.as_slice() {
            ["_storage", "assets", id] => (Blob::Asset, id.parse::<u64>().ok()),
            ["_storage", "artifacts", id] => (Blob::Artifact, id.parse::<u64>().ok()),
            _ => return Reply::text(404, "The specified resource does not exist."),
        };
        let (Some(id), "GET") = (id, req.method.as_str()) else {
            return Reply::text(404, "The specified resource does not exist.");
        };
        let expires = req.query("expires").and_then(|e| e.parse::<u64>().ok());
        let Some(expires) = expires else {
            return Reply::text(403, "Missing expiry");
        };
        if req.query("sig") != Some(self.sign(blob, id, expires).as_str()) {
            return Reply::text(403, "Signature does not match");
        }
        if expires < now() {
            return Reply::text(403, "Request has expired");
        }
        let found = match blob {
            Blob::Asset => store
                .asset_anywhere(id)
                .map(|a| (a.content_type.as_str(), a.data.clone())),
            Blob::Artifact => store
                .artifacts
                .iter()
                .find(|a| a.id == id && !a.expired)
                .map(|a| ("application/zip", a.data.clone())),
        };
        match found {
            Some((content_type, data)) => Reply::bytes(content_type, data),
            None => Reply::text(404, "The specified blob does not exist."),
        }
    }
}

/// A per-process signing secret. Not cryptographically random (no RNG crate
/// here), but unpredictable enough that tests cannot forge URLs by accident.
fn fresh_secret() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.update(wall.to_le_bytes());
    hasher.update(process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(format!("{:?}", Instant::now()));
    hasher.finalize().into()
}
