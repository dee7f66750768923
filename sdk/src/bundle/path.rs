//! The path rules of bundle format v1 (see the module docs).

use super::error::EntryProblem;
use super::{MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_PATH_BYTES};

/// A path from raw bytes (a zip entry name): UTF-8 and [`check_path`].
pub(crate) fn path_from_bytes(raw: &[u8]) -> Result<&str, EntryProblem> {
    let path = std::str::from_utf8(raw).map_err(|_| EntryProblem::NotUtf8)?;
    check_path(path)?;
    Ok(path)
}

/// Check one bundle path against the format's rules.
pub(crate) fn check_path(path: &str) -> Result<(), EntryProblem> {
    if path.is_empty() {
        return Err(EntryProblem::EmptyPath);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(EntryProblem::PathTooLong(path.len()));
    }
    if path.starts_with('/') {
        return Err(EntryProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(EntryProblem::Backslash);
    }
    if let Some(c) = path.chars().find(|c| c.is_ascii_control()) {
        return Err(EntryProblem::ControlCharacter(c));
    }
    let mut depth = 0;
    for component in path.split('/') {
        depth += 1;
        match component {
            "" => return Err(EntryProblem::EmptyComponent),
            "." => return Err(EntryProblem::DotComponent),
            ".." => return Err(EntryProblem::LeavesBundle),
            c if c.len() > MAX_COMPONENT_BYTES => {
                return Err(EntryProblem::ComponentTooLong(c.len()))
            }
            _ => {}
        }
    }
    if depth > MAX_DEPTH {
        return Err(EntryProblem::TooDeep(depth));
    }
    Ok(())
}

/// The directories a path implies, outermost first: `a/b/c` gives `a`, `a/b`.
pub(crate) fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(end, _)| &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for path in [
            "compose.yaml",
            "images/app.tar",
            "a/b/c/d.txt",
            ".env.example",
            "..hidden",
            "a..b/c",
            "données/é.txt",
            "sp ace/x",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn refuses_each_rule() {
        let long_component = "x".repeat(MAX_COMPONENT_BYTES + 1);
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        let long = format!("{}/x", vec!["y".repeat(200); 6].join("/"));
        for (path, problem) in [
            ("", EntryProblem::EmptyPath),
            ("/etc/passwd", EntryProblem::Absolute),
            ("../x", EntryProblem::LeavesBundle),
            ("a/../../x", EntryProblem::LeavesBundle),
            ("a/..", EntryProblem::LeavesBundle),
            ("./a", EntryProblem::DotComponent),
            ("a/./b", EntryProblem::DotComponent),
            ("a//b", EntryProblem::EmptyComponent),
            ("a/", EntryProblem::EmptyComponent),
            ("a\\b", EntryProblem::Backslash),
            ("C:\\x", EntryProblem::Backslash),
            ("a\0b", EntryProblem::ControlCharacter('\0')),
            ("a\nb", EntryProblem::ControlCharacter('\n')),
            ("a\u{7f}", EntryProblem::ControlCharacter('\u{7f}')),
            (
                long_component.as_str(),
                EntryProblem::ComponentTooLong(MAX_COMPONENT_BYTES + 1),
            ),
            (deep.as_str(), EntryProblem::TooDeep(MAX_DEPTH + 1)),
            (long.as_str(), EntryProblem::PathTooLong(long.len())),
        ] {
            assert_eq!(check_path(path), Err(problem), "{path:?}");
        }
        assert_eq!(
            path_from_bytes(b"caf\xe9.txt"),
            Err(EntryProblem::NotUtf8),
            "Latin-1 bytes are not UTF-8"
        );
        assert_eq!(path_from_bytes("é".as_bytes()), Ok("é"));
    }

    #[test]
    fn limits_are_inclusive() {
        let component = "x".repeat(MAX_COMPONENT_BYTES);
        assert_eq!(check_path(&component), Ok(()));
        let deep = vec!["d"; MAX_DEPTH].join("/");
        assert_eq!(check_path(&deep), Ok(()));
        // Four 200-byte directories, then a name filling up to the limit.
        let dirs = vec!["a".repeat(200); 4].join("/");
        let exact = format!("{dirs}/{}", "b".repeat(MAX_PATH_BYTES - dirs.len() - 1));
        assert_eq!(exact.len(), MAX_PATH_BYTES);
        assert_eq!(check_path(&exact), Ok(()));
    }

    #[test]
    fn parents_are_listed_outermost_first() {
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parents("file").count(), 0);
    }
}
