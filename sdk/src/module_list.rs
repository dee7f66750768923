//! The kernel module list that `ee-image` writes into the initramfs and
//! `ee-init` loads at boot (`/etc/ee/modules`).
//!
//! Format (UTF-8 text, `\n` line ends): the first line is exactly
//! `ee-modules 1` (format name and version); every other line is
//! `<name> <absolute guest path>`, one module per line, in load order
//! (dependencies first). Names use `_` (`tdx_guest`); files are already
//! decompressed. The list is part of the initrd, so it is measured into RTMR2
//! with everything else the image holds.

/// Guest path of the module list.
pub const MODULE_LIST_PATH: &str = "/etc/ee/modules";

/// First line of the list: format name and version.
pub const MODULE_LIST_HEADER: &str = "ee-modules 1";

/// One listed module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModuleEntry {
    /// Module name, e.g. `tdx_guest`.
    pub name: String,
    /// Absolute guest path of the `.ko` file.
    pub path: String,
}

/// A line of the list that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{MODULE_LIST_PATH} line {line}: {problem}")]
pub struct ModuleListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Parse a module list.
pub fn parse(text: &str) -> Result<Vec<ModuleEntry>, ModuleListError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header != MODULE_LIST_HEADER {
        return Err(ModuleListError {
            line: 1,
            problem: format!("expected the header {MODULE_LIST_HEADER:?}, got {header:?}"),
        });
    }
    let mut modules = Vec::new();
    for (i, line) in lines.enumerate() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some(name), Some(path), None) if valid_name(name) && path.starts_with('/') => modules
                .push(ModuleEntry {
                    name: name.into(),
                    path: path.into(),
                }),
            _ => {
                return Err(ModuleListError {
                    line: i + 2,
                    problem: format!("expected `<name> <absolute path>`, got {line:?}"),
                })
            }
        }
    }
    Ok(modules)
}

/// Render `modules` in the list format.
pub fn render<'a>(modules: impl IntoIterator<Item = &'a ModuleEntry>) -> String {
    let mut text = format!("{MODULE_LIST_HEADER}\n");
    for m in modules {
        text.push_str(&m.name);
        text.push(' ');
        text.push_str(&m.path);
        text.push('\n');
    }
    text
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "ee-modules 1\ntsm /lib/modules/7.3/kernel/drivers/virt/coco/tsm.ko\ntdx_guest /lib/modules/7.3/kernel/drivers/virt/coco/tdx-guest/tdx-guest.ko\n";

    #[test]
    fn parses_in_order_and_round_trips() {
        let modules = parse(LIST).unwrap();
        let names: Vec<_> = modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["tsm", "tdx_guest"]);
        assert_eq!(render(&modules), LIST);
        assert!(parse("ee-modules 1\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_lists_name_the_line() {
        for (text, line, needle) in [
            ("", 1, "got \"\""),
            ("ee-modules 2\n", 1, "\"ee-modules 2\""),
            ("ee-modules 1\ntsm\n", 2, "got \"tsm\""),
            ("ee-modules 1\ntsm a b\n", 2, "got \"tsm a b\""),
            ("ee-modules 1\na /a.ko\ntsm rel.ko\n", 3, "rel.ko"),
            ("ee-modules 1\nb/d /a.ko\n", 2, "b/d"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
