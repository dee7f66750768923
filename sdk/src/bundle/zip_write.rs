//! Deterministic bundle zips, for inline bundles.

use std::io::Cursor;
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::dir::{read_file, walk, Total};
use super::error::BundleError;
use super::manifest::BundleManifest;
use super::Limits;

/// A deterministic zip of the bundle in directory `root`, under
/// [`Limits::default`].
///
/// Entries are the regular files in path-byte order, deflated, with the
/// fixed timestamp 1980-01-01 00:00 and mode 0755 or 0644 after the
/// executable flag; there are no directory entries. The same files give the
/// same bytes with the same build (another deflate implementation may
/// compress differently; the bundle digest never depends on the zip bytes).
/// [`super::extract_zip`] of the result gives a bundle with the digest of
/// [`super::digest_dir`]`(root)`. Refuses what `digest_dir` refuses.
pub fn zip_dir(root: &Path) -> Result<Vec<u8>, BundleError> {
    zip_dir_with_manifest(root).map(|(zip, _)| zip)
}

/// [`zip_dir`] and the manifest of the files exactly as they went into the
/// zip (each file is read once), e.g. to compare the digest with what the
/// agent reports.
pub fn zip_dir_with_manifest(root: &Path) -> Result<(Vec<u8>, BundleManifest), BundleError> {
    let limits = Limits::default();
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let mut total = Total::new(&limits);
    let mut files = Vec::new();
    for found in walk(root, &limits)? {
        let mode = if found.executable() { 0o755 } else { 0o644 };
        let options = SimpleFileOptions::DEFAULT
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode)
            .large_file(limits.max_file_bytes >= u64::from(u32::MAX));
        writer
            .start_file(found.path.as_str(), options)
            .map_err(|e| BundleError::ZipWrite(format!("{}: {e}", found.path)))?;
        let (size, sha256) = read_file(&found, &limits, &mut writer)?;
        total.add(size)?;
        files.push(found.into_bundle_file(size, sha256));
    }
    // Validate (no files, case collisions) before handing out the zip.
    let manifest = BundleManifest::new(files)?;
    let zip = writer
        .finish()
        .map_err(|e| BundleError::ZipWrite(e.to_string()))?
        .into_inner();
    Ok((zip, manifest))
}
