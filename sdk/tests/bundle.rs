//! Deploy bundles: the digest against the independent vector in
//! `sdk/testdata/bundle-v1.json`, what the digest does and does not depend
//! on, every refusal of `digest_dir` and `extract_zip` (zips built here with
//! the zip crate's writer, some patched byte by byte to lie), cleanup after a
//! failed extraction, round trips through `zip_dir`. The `ee bundle`
//! commands are tested in sdk/cli/tests/bundle.rs.
#![cfg(all(feature = "bundle", unix))]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use easyenclave::bundle::{
    digest_dir, digest_dir_with_limits, extract_zip, zip_dir, zip_dir_with_manifest,
    BundleManifest, Limits,
};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const VECTOR: &str = include_str!("../testdata/bundle-v1.json");

// ---- helpers ---------------------------------------------------------------

#[path = "bundle_tree/mod.rs"]
mod bundle_tree;
use bundle_tree::{tree, vector_tree, write_tree, SMALL};

/// One entry of a test zip.
struct Entry<'a> {
    name: &'a str,
    content: &'a [u8],
    options: SimpleFileOptions,
}

fn file<'a>(name: &'a str, content: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        content,
        options: SimpleFileOptions::DEFAULT.compression_method(CompressionMethod::Deflated),
    }
}

fn stored<'a>(name: &'a str, content: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        content,
        options: SimpleFileOptions::DEFAULT.compression_method(CompressionMethod::Stored),
    }
}

fn zip_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        if let Some(dir) = entry.name.strip_suffix('/') {
            writer.add_directory(dir, entry.options).unwrap();
        } else {
            writer.start_file(entry.name, entry.options).unwrap();
            writer.write_all(entry.content).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

/// Offsets of the records (signature, name-length field, fixed size) naming
/// `name`, with the fixed header's start.
fn records(
    zip: &[u8],
    signature: &[u8; 4],
    name_len_at: usize,
    fixed: usize,
    name: &[u8],
) -> Vec<usize> {
    (0..zip.len().saturating_sub(fixed))
        .filter(|&at| &zip[at..at + 4] == signature)
        .filter(|&at| {
            let len =
                u16::from_le_bytes([zip[at + name_len_at], zip[at + name_len_at + 1]]) as usize;
            zip.get(at + fixed..at + fixed + len) == Some(name)
        })
        .collect()
}

/// Apply `central` to the central directory header of `name` and `local` to
/// its local header (each gets the header from its signature on).
fn patch(zip: &mut [u8], name: &str, central: impl Fn(&mut [u8]), local: impl Fn(&mut [u8])) {
    let cd = records(zip, b"PK\x01\x02", 28, 46, name.as_bytes());
    let lh = records(zip, b"PK\x03\x04", 26, 30, name.as_bytes());
    assert_eq!((cd.len(), lh.len()), (1, 1), "one record each for {name}");
    central(&mut zip[cd[0]..]);
    local(&mut zip[lh[0]..]);
}

fn put_u32(header: &mut [u8], at: usize, value: u32) {
    header[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Rewrite the uncompressed size of `name` in both headers.
fn lie_about_size(zip: &mut [u8], name: &str, size: u32) {
    patch(
        zip,
        name,
        |h| put_u32(h, 24, size),
        |h| put_u32(h, 22, size),
    );
}

/// Set the unix mode (external attributes' high half) of `name`.
fn set_mode(zip: &mut [u8], name: &str, mode: u32) {
    patch(zip, name, |h| put_u32(h, 38, mode << 16), |_| {});
}

/// Every path under `root`, for before/after comparisons.
fn snapshot(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// Extract `zip` under `limits` into `<tmp>/work/dest` and return the error
/// message, checking that nothing changed anywhere under `<tmp>` (a `../`
/// escape from `dest` would land in `work` or `tmp`) and `dest` is gone.
fn refused(zip: &[u8], limits: &Limits) -> String {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(root.path().join("sentinel"), b"outside").unwrap();
    let dest = work.join("dest");
    let before = snapshot(root.path());
    let err = extract_zip(zip, &dest, limits).unwrap_err().to_string();
    assert_eq!(snapshot(root.path()), before, "files changed after: {err}");
    assert!(!dest.exists(), "dest left behind after: {err}");
    err
}

fn assert_refused(zip: &[u8], limits: &Limits, expected: &str) {
    let err = refused(zip, limits);
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
}

/// Deterministic incompressible bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

// ---- the digest ------------------------------------------------------------

#[test]
fn digest_matches_the_independent_vector() {
    let (vector, dir) = vector_tree(VECTOR);
    let manifest = digest_dir(dir.path()).unwrap();
    assert_eq!(
        easyenclave::canonical::to_string(&manifest).unwrap(),
        vector["manifest"].as_str().unwrap()
    );
    assert_eq!(manifest.digest_hex(), vector["digest"].as_str().unwrap());

    // The same bundle through a zip and back.
    let zip = zip_dir(dir.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let extracted = extract_zip(&zip, &out.path().join("b"), &Limits::default()).unwrap();
    assert_eq!(extracted.digest_hex(), vector["digest"].as_str().unwrap());
}

#[test]
fn digest_ignores_creation_order_mtimes_and_iteration_order() {
    let files: Vec<(String, Vec<u8>, bool)> = (0..40)
        .map(|i| (format!("d{}/f{i:02}", i % 3), noise(i * 7), i % 5 == 0))
        .collect();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (path, content, exec) in &files {
        write_tree(a.path(), &[(path, content, *exec)]);
    }
    for (path, content, exec) in files.iter().rev() {
        write_tree(b.path(), &[(path, content, *exec)]);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(b.path().join(path))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let (da, db) = (digest_dir(a.path()).unwrap(), digest_dir(b.path()).unwrap());
    assert_eq!(da, db);
    assert_eq!(da.files().len(), 40);
    let paths: Vec<&str> = da.files().iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}

#[test]
fn exec_bit_and_content_change_the_digest_other_mode_bits_do_not() {
    let dir = tree(SMALL);
    let base = digest_dir(dir.path()).unwrap().digest();
    let script = dir.path().join("compose.yaml");

    fs::set_permissions(&script, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        digest_dir(dir.path()).unwrap().digest(),
        base,
        "rw bits do not count"
    );
    fs::set_permissions(&script, fs::Permissions::from_mode(0o610)).unwrap();
    let exec = digest_dir(dir.path()).unwrap().digest();
    assert_ne!(exec, base, "any execute bit makes the file executable");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o744)).unwrap();
    assert_eq!(digest_dir(dir.path()).unwrap().digest(), exec);

    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&script, b"services: {}\n\n").unwrap();
    assert_ne!(digest_dir(dir.path()).unwrap().digest(), base);
}

#[test]
fn layout_helpers_on_a_real_tree() {
    let manifest = digest_dir(tree(SMALL).path()).unwrap();
    assert_eq!(manifest.compose_file().unwrap(), "compose.yaml");
    assert_eq!(manifest.image_archives(), ["images/app.tar"]);
    assert_eq!(manifest.total_size(), 13 + 10 + 9);
}

// ---- digest_dir refusals ---------------------------------------------------

fn dir_refused(root: &Path, limits: &Limits) -> String {
    digest_dir_with_limits(root, limits)
        .unwrap_err()
        .to_string()
}

#[test]
fn digest_dir_refuses_links_special_files_and_empty_dirs() {
    let d = tree(SMALL);
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("bin/link")).unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"bin/link\": is a symbolic link"
    );

    let d = tree(SMALL);
    std::os::unix::fs::symlink("bin", d.path().join("dirlink")).unwrap();
    assert!(dir_refused(d.path(), &Limits::default()).contains("\"dirlink\": is a symbolic link"));

    let d = tree(SMALL);
    let _listener = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"sock\": is a socket, not a regular file"
    );

    let d = tree(SMALL);
    let status = std::process::Command::new("mkfifo")
        .arg(d.path().join("images/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"images/pipe\": is a FIFO, not a regular file"
    );

    let d = tree(SMALL);
    fs::create_dir_all(d.path().join("empty/inner")).unwrap();
    let err = dir_refused(d.path(), &Limits::default());
    assert!(err.contains("is an empty directory"), "{err}");
    assert!(err.starts_with("bundle entry \"empty/inner\""), "{err}");

    let d = tempfile::tempdir().unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle: holds no files"
    );
}

#[test]
fn digest_dir_refuses_bad_names() {
    use std::os::unix::ffi::OsStrExt as _;
    let d = tree(SMALL);
    fs::write(d.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9")), b"x").unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"caf\u{fffd}\": path is not valid UTF-8"
    );

    let d = tree(SMALL);
    fs::write(d.path().join("a\\b"), b"x").unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"a\\\\b\": path contains a backslash"
    );

    let d = tree(SMALL);
    fs::write(d.path().join("line\nbreak"), b"x").unwrap();
    assert!(dir_refused(d.path(), &Limits::default()).contains("control character U+000A"));

    let d = tree(SMALL);
    fs::write(d.path().join("COMPOSE.yaml"), b"x").unwrap();
    assert_eq!(
        dir_refused(d.path(), &Limits::default()),
        "bundle entry \"compose.yaml\": \"compose.yaml\" differs from \"COMPOSE.yaml\" only in letter case"
    );
}

#[test]
fn digest_dir_enforces_limits() {
    let d = tree(SMALL);
    let limits = |f: fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        l
    };
    assert_eq!(
        dir_refused(d.path(), &limits(|l| l.max_files = 2)),
        "bundle: more than 2 files"
    );
    assert!(digest_dir_with_limits(d.path(), &limits(|l| l.max_files = 3)).is_ok());
    assert_eq!(
        dir_refused(d.path(), &limits(|l| l.max_file_bytes = 12)),
        "bundle entry \"compose.yaml\": is larger than the 12-byte per-file limit"
    );
    assert_eq!(
        dir_refused(d.path(), &limits(|l| l.max_total_bytes = 31)),
        "bundle: files add up to more than the 31-byte total limit"
    );
    assert!(digest_dir_with_limits(d.path(), &limits(|l| l.max_total_bytes = 32)).is_ok());

    let not_dir = d.path().join("compose.yaml");
    assert!(dir_refused(&not_dir, &Limits::default()).ends_with("compose.yaml is not a directory"));
    let missing = dir_refused(&d.path().join("missing"), &Limits::default());
    assert!(missing.starts_with("bundle: cannot read "), "{missing}");

    // The root itself may be a link to the bundle.
    let link_holder = tempfile::tempdir().unwrap();
    let link = link_holder.path().join("bundle");
    std::os::unix::fs::symlink(d.path(), &link).unwrap();
    assert_eq!(digest_dir(&link).unwrap(), digest_dir(d.path()).unwrap());
}

// ---- extraction ------------------------------------------------------------

#[test]
fn round_trip_keeps_digest_exec_bits_and_modes() {
    let src = tree(SMALL);
    let (zip, zipped) = zip_dir_with_manifest(src.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("bundle");
    let extracted = extract_zip(&zip, &dest, &Limits::default()).unwrap();

    let original = digest_dir(src.path()).unwrap();
    assert_eq!(zipped, original);
    assert_eq!(extracted, original);
    assert_eq!(digest_dir(&dest).unwrap(), extracted);

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest), 0o700);
    assert_eq!(mode(&dest.join("bin/run.sh")), 0o755);
    assert_eq!(mode(&dest.join("compose.yaml")), 0o644);
    assert_eq!(fs::read(dest.join("images/app.tar")).unwrap(), b"tar bytes");
}

#[test]
fn zip_dir_is_deterministic() {
    let a = tree(SMALL);
    let mut reversed = SMALL.to_vec();
    reversed.reverse();
    let b = tree(&reversed);
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 365 * 20);
    fs::File::options()
        .write(true)
        .open(b.path().join("compose.yaml"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let zip = zip_dir(a.path()).unwrap();
    assert_eq!(zip, zip_dir(a.path()).unwrap());
    assert_eq!(zip, zip_dir(b.path()).unwrap());

    let names: Vec<String> = {
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
        (0..archive.len())
            .map(|i| {
                let entry = archive.by_index(i).unwrap();
                assert_eq!(entry.last_modified(), Some(zip::DateTime::default()));
                entry.name().to_owned()
            })
            .collect()
    };
    assert_eq!(names, ["bin/run.sh", "compose.yaml", "images/app.tar"]);
}

#[test]
fn directory_entries_only_imply_directories() {
    let zip = zip_of(&[
        file("sub/", b""),
        file("empty/", b""),
        file("sub/x.txt", b"x"),
        file("compose.yaml", b"services: {}\n"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("b");
    let manifest = extract_zip(&zip, &dest, &Limits::default()).unwrap();
    assert!(
        !dest.join("empty").exists(),
        "an empty directory entry creates nothing"
    );
    assert_eq!(digest_dir(&dest).unwrap(), manifest);
    assert_eq!(manifest.files().len(), 2);
}

#[test]
fn extraction_refuses_unsafe_names() {
    for (name, expected) in [
        ("../x", "bundle entry \"../x\": path leaves the bundle"),
        (
            "a/../../x",
            "bundle entry \"a/../../x\": path leaves the bundle",
        ),
        (
            "/etc/cron.d/x",
            "bundle entry \"/etc/cron.d/x\": absolute path",
        ),
        (
            "..\\x",
            "bundle entry \"..\\\\x\": path contains a backslash",
        ),
        ("./x", "path has a \".\" component"),
        ("a//x", "path has an empty component"),
        ("tab\there", "control character U+0009"),
    ] {
        let zip = zip_of(&[file(name, b"payload"), file("compose.yaml", b"x")]);
        assert_refused(&zip, &Limits::default(), expected);
        // Also when the bad entry comes after a good one.
        let zip = zip_of(&[file("compose.yaml", b"x"), stored(name, b"payload")]);
        assert_refused(&zip, &Limits::default(), expected);
    }

    let mut zip = zip_of(&[file("compose.yaml", b"x"), file("caf_.txt", b"x")]);
    patch(
        &mut zip,
        "caf_.txt",
        |h| h[46 + 3] = 0xe9,
        |h| h[30 + 3] = 0xe9,
    );
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"caf\u{fffd}.txt\": path is not valid UTF-8",
    );
}

#[test]
fn extraction_refuses_links_devices_and_directories_in_disguise() {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer
        .start_file("compose.yaml", SimpleFileOptions::DEFAULT)
        .unwrap();
    writer.write_all(b"x").unwrap();
    writer
        .add_symlink("link", "/etc/passwd", SimpleFileOptions::DEFAULT)
        .unwrap();
    let zip = writer.finish().unwrap().into_inner();
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"link\": is a symbolic link",
    );

    for (mode, expected) in [
        (
            0o020644,
            "bundle entry \"dev\": is a character device, not a regular file",
        ),
        (
            0o060644,
            "bundle entry \"dev\": is a block device, not a regular file",
        ),
        (
            0o010644,
            "bundle entry \"dev\": is a FIFO, not a regular file",
        ),
        (
            0o140644,
            "bundle entry \"dev\": is a socket, not a regular file",
        ),
        (0o120777, "bundle entry \"dev\": is a symbolic link"),
        (
            0o040755,
            "bundle entry \"dev\": is marked as a directory but its name does not end in \"/\"",
        ),
    ] {
        let mut zip = zip_of(&[file("compose.yaml", b"x"), file("dev", b"")]);
        set_mode(&mut zip, "dev", mode);
        assert_refused(&zip, &Limits::default(), expected);
    }

    let mut zip = zip_of(&[file("compose.yaml", b"x"), file("d/", b"")]);
    patch(&mut zip, "d/", |h| put_u32(h, 24, 5), |_| {});
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"d/\": is a directory entry with 5 bytes of data",
    );
}

#[test]
fn extraction_refuses_encryption_other_methods_and_duplicates() {
    let mut zip = zip_of(&[file("compose.yaml", b"x"), stored("secret", b"data")]);
    patch(&mut zip, "secret", |h| h[8] |= 1, |h| h[6] |= 1);
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"secret\": is encrypted",
    );

    let mut zip = zip_of(&[file("compose.yaml", b"x"), stored("packed", b"data")]);
    // Method 12 is bzip2.
    patch(&mut zip, "packed", |h| h[10] = 12, |h| h[8] = 12);
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"packed\": uses compression method 12 (bzip2); only stored (0) and deflate (8) are supported",
    );

    let mut zip = zip_of(&[file("a.txt", b"first"), file("b.txt", b"second")]);
    patch(&mut zip, "b.txt", |h| h[46] = b'a', |h| h[30] = b'a');
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"a.txt\": appears twice",
    );

    let zip = zip_of(&[file("README", b"1"), file("readme", b"2")]);
    assert_refused(
        &zip,
        &Limits::default(),
        "\"readme\" differs from \"README\" only in letter case",
    );

    let zip = zip_of(&[file("a", b"1"), file("a/b", b"2")]);
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"a/b\": \"a\" would be both a file and a directory",
    );
    let zip = zip_of(&[file("a/", b""), file("a", b"2")]);
    assert_refused(
        &zip,
        &Limits::default(),
        "bundle entry \"a\": \"a\" would be both a file and a directory",
    );

    assert_refused(
        b"not a zip at all",
        &Limits::default(),
        "bundle: not a readable zip",
    );
    assert_refused(
        &zip_of(&[file("only/", b"")]),
        &Limits::default(),
        "bundle: holds no files",
    );
}

#[test]
fn zip_bomb_is_refused_by_its_ratio() {
    let zeros = vec![0u8; 8 << 20];
    let zip = zip_of(&[file("compose.yaml", b"x"), file("zeros.bin", &zeros)]);
    assert!(
        zip.len() < 64 << 10,
        "deflate squeezes 8 MiB of zeros to {} bytes",
        zip.len()
    );
    let err = refused(&zip, &Limits::default());
    let ratio: u64 = err
        .strip_prefix("bundle: compression ratio ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(ratio > 500, "{err}");
    assert!(err.ends_with(":1 over the 100:1 limit"), "{err}");
}

#[test]
fn lying_headers_are_caught_by_counting_inflated_bytes() {
    let zeros = vec![0u8; 8 << 20];
    let bomb = || {
        let mut zip = zip_of(&[
            stored("compose.yaml", b"services: {}\n"),
            file("zeros.bin", &zeros),
        ]);
        lie_about_size(&mut zip, "zeros.bin", 1000);
        zip
    };
    // The declared sizes pass every check; the inflated bytes do not. Each
    // case writes compose.yaml first, so cleanup has something to remove.
    let err = refused(&bomb(), &Limits::default());
    assert!(
        err.starts_with("bundle: inflates to more than 100 times the zip's "),
        "{err}"
    );
    assert!(
        err.ends_with("over the 100:1 compression ratio limit"),
        "{err}"
    );

    let generous = Limits {
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    assert_refused(
        &bomb(),
        &Limits {
            max_file_bytes: 64 << 10,
            ..generous
        },
        "bundle entry \"zeros.bin\": inflates past the 64 KiB per-file limit",
    );
    assert_refused(
        &bomb(),
        &Limits {
            max_total_bytes: 1 << 20,
            ..generous
        },
        "bundle: files add up to more than the 1 MiB total limit",
    );

    // Within every limit, a size that differs from the header is still refused.
    let data = noise(5000);
    for declared in [4000, 6000] {
        let mut zip = zip_of(&[file("compose.yaml", b"x"), file("data.bin", &data)]);
        lie_about_size(&mut zip, "data.bin", declared);
        assert_refused(
            &zip,
            &generous,
            &format!("bundle entry \"data.bin\": inflated to 5000 bytes but its header declares {declared}"),
        );
    }
}

#[test]
fn honest_sizes_over_the_limits_are_refused_before_writing() {
    let data = noise(2048);
    let zip = zip_of(&[
        file("compose.yaml", b"x"),
        stored("a.bin", &data),
        stored("b.bin", &data),
    ]);
    let limits = |f: fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        l
    };
    assert_refused(
        &zip,
        &limits(|l| l.max_file_bytes = 1024),
        "bundle entry \"a.bin\": declares 2 KiB, over the 1 KiB per-file limit",
    );
    assert_refused(
        &zip,
        &limits(|l| l.max_total_bytes = 4096),
        "bundle: zip entries declare 4097 bytes in total, over the 4 KiB total limit",
    );
    assert_refused(
        &zip,
        &limits(|l| l.max_files = 2),
        "bundle: zip has 3 entries, over the 2-file limit",
    );
    assert_refused(
        &zip,
        &limits(|l| l.max_zip_bytes = 1000),
        &format!(
            "bundle: zip is {} bytes, over the 1000-byte limit",
            zip.len()
        ),
    );
    assert!(extract_zip(
        &zip,
        &tempfile::tempdir().unwrap().path().join("d"),
        &Limits::default()
    )
    .is_ok());
}

#[test]
fn corrupt_data_removes_what_was_written() {
    let data = noise(4096);
    let mut zip = zip_of(&[
        file("compose.yaml", b"services: {}\n"),
        stored("data.bin", &data),
    ]);
    // Flip a byte inside the stored data: the CRC no longer matches.
    let at = zip.windows(16).position(|w| w == &data[100..116]).unwrap();
    zip[at] ^= 0xff;
    let err = refused(&zip, &Limits::default());
    assert!(
        err.starts_with("bundle entry \"data.bin\": cannot be read: "),
        "{err}"
    );
}

#[test]
fn existing_destination_is_left_alone() {
    let zip = zip_of(&[file("compose.yaml", b"x")]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), b"mine").unwrap();
    let err = extract_zip(&zip, &dest, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("/dest: already exists"), "{err}");
    assert_eq!(fs::read(dest.join("keep")).unwrap(), b"mine");
    assert!(!dest.join("compose.yaml").exists());

    // A dangling link at the destination is not followed.
    let link = out.path().join("link");
    std::os::unix::fs::symlink(out.path().join("elsewhere"), &link).unwrap();
    let err = extract_zip(&zip, &link, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("/link: already exists"), "{err}");
    assert!(!out.path().join("elsewhere").exists());
}

#[test]
fn manifest_of_extraction_equals_digest_dir_of_the_result() {
    let files: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("dir{}/sub{}/f{i}", i % 4, i % 2), noise(i * 100)))
        .collect();
    let entries: Vec<Entry<'_>> = files
        .iter()
        .enumerate()
        .map(|(i, (name, content))| Entry {
            name,
            content,
            options: SimpleFileOptions::DEFAULT
                .compression_method(if i % 2 == 0 {
                    CompressionMethod::Deflated
                } else {
                    CompressionMethod::Stored
                })
                .unix_permissions(if i % 3 == 0 { 0o750 } else { 0o640 }),
        })
        .collect();
    let zip = zip_of(&entries);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("b");
    let manifest: BundleManifest = extract_zip(&zip, &dest, &Limits::default()).unwrap();
    assert_eq!(digest_dir(&dest).unwrap(), manifest);
    assert_eq!(manifest.files().iter().filter(|f| f.executable).count(), 10);
}
