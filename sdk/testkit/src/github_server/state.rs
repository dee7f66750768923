//! The server's data (releases, assets, artifacts) and its optional JSON
//! state file, rewritten atomically (temp file + rename) after each change.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Version of the state file format.
const STATE_VERSION: u32 = 1;

/// Everything the server stores.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Store {
    version: u32,
    /// Ids are shared by releases, assets and artifacts, as unique as GitHub's.
    next_id: u64,
    pub releases: Vec<StoredRelease>,
    pub artifacts: Vec<StoredArtifact>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredRelease {
    pub id: u64,
    pub repo: String,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub author: String,
    pub created_at: u64,
    pub published_at: Option<u64>,
    pub assets: Vec<StoredAsset>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredAsset {
    pub id: u64,
    pub name: String,
    pub label: Option<String>,
    pub content_type: String,
    pub uploader: String,
    pub created_at: u64,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredArtifact {
    pub id: u64,
    pub repo: String,
    pub name: String,
    pub created_at: u64,
    pub expired: bool,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl Store {
    /// An empty store, or the one in `path` if that file exists.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Store> {
        let empty = Store {
            version: STATE_VERSION,
            next_id: 1,
            releases: Vec::new(),
            artifacts: Vec::new(),
        };
        let Some(path) = path else { return Ok(empty) };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let store: Store = serde_json::from_str(&text)
            .with_context(|| format!("parsing state file {}", path.display()))?;
        if store.version != STATE_VERSION {
            bail!(
                "state file {} has version {}, expected {STATE_VERSION}",
                path.display(),
                store.version
            );
        }
        Ok(store)
    }

    /// Writes the store to `path` via a temporary file in the same directory,
    /// so a crash leaves either the old or the new file, never a mix.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let file_name = path
            .file_name()
            .with_context(|| format!("state file {} has no file name", path.display()))?;
        let temp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
        let data = serde_json::to_vec(self).context("encoding state")?;
        let mut file =
            fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(&data)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temp.display()))?;
        fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
        // Make the rename itself durable.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// A fresh id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn release(&self, repo: &str, id: u64) -> Option<&StoredRelease> {
        self.releases.iter().find(|r| r.repo == repo && r.id == id)
    }

    pub fn release_mut(&mut self, repo: &str, id: u64) -> Option<&mut StoredRelease> {
        self.releases
            .iter_mut()
            .find(|r| r.repo == repo && r.id == id)
    }

    /// The asset with `id` and the release that holds it.
    pub fn asset(&self, repo: &str, id: u64) -> Option<(&StoredRelease, &StoredAsset)> {
        self.releases
            .iter()
            .filter(|r| r.repo == repo)
            .find_map(|r| r.assets.iter().find(|a| a.id == id).map(|a| (r, a)))
    }

    pub fn asset_anywhere(&self, id: u64) -> Option<&StoredAsset> {
        self.releases
            .iter()
            .find_map(|r| r.assets.iter().find(|a| a.id == id))
    }

    pub fn artifact(&self, repo: &str, id: u64) -> Option<&StoredArtifact> {
        self.artifacts.iter().find(|a| a.repo == repo && a.id == id)
    }
}

/// Bytes as standard base64 in the state file.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_and_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = Store::load(Some(&path)).unwrap();
        let id = store.next_id();
        store.artifacts.push(StoredArtifact {
            id,
            repo: "o/r".to_owned(),
            name: "bundle".to_owned(),
            created_at: 5,
            expired: false,
            data: vec![0, 1, 255],
        });
        store.save(&path).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "temporary file left behind");
        let mut again = Store::load(Some(&path)).unwrap();
        assert_eq!(again.artifact("o/r", id).unwrap().data, [0, 1, 255]);
        assert_eq!(again.next_id(), id + 1);
    }

    #[test]
    fn wrong_version_and_garbage_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(
            &path,
            r#"{"version":2,"next_id":1,"releases":[],"artifacts":[]}"#,
        )
        .unwrap();
        let err = Store::load(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("version 2"), "{err:#}");
        fs::write(&path, "{").unwrap();
        assert!(Store::load(Some(&path)).is_err());
    }
}
