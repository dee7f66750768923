//! `image.json` for built images. The format itself is
//! [`easyenclave::image_manifest`]; this module reads and digests files for it.

use std::path::Path;

pub use easyenclave::image_manifest::*;

use super::lock::LockedPackage;
use super::BuildError;

/// Read and check `image.json` from an image directory.
pub fn load(dir: &Path) -> Result<ImageManifest, BuildError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = super::read(&path)?;
    ImageManifest::parse(&bytes).map_err(|reason| BuildError::Format { path, reason })
}

/// Digests of the file at `path`, recorded under its file name.
pub fn file_digest(path: &Path) -> Result<FileDigest, BuildError> {
    let bytes = super::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileDigest::of(&name, &bytes))
}

/// The manifest's record of a locked package.
pub fn package_digest(pkg: &LockedPackage) -> PackageDigest {
    PackageDigest {
        name: pkg.name.clone(),
        version: pkg.version.clone(),
        sha256: pkg.sha256,
    }
}
