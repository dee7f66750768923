//! Loading the kernel modules the image lists.
//!
//! The image builder (`ee-image`) writes `/etc/ee/modules` in the format of
//! [`easyenclave::module_list`]: module names and paths in load order
//! (dependencies first), already decompressed. Each is loaded with
//! finit_module(2); EEXIST (already loaded or built in) is fine.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::root::FsRoot;

pub use easyenclave::module_list::{ModuleEntry, MODULE_LIST_PATH as MODULE_LIST};

/// Outcome of loading one listed module.
#[derive(Debug, PartialEq, Eq)]
pub enum ModuleOutcome {
    /// Inserted now.
    Loaded,
    /// EEXIST: already loaded.
    AlreadyLoaded,
    /// Could not be opened or inserted; the reason.
    Failed(String),
}

/// What happened to each listed module and how long loading took.
#[derive(Debug)]
pub struct ModuleReport {
    /// One entry per listed module, in list order.
    pub modules: Vec<(ModuleEntry, ModuleOutcome)>,
    /// Time spent loading the whole list.
    pub elapsed: Duration,
}

impl ModuleReport {
    /// The modules that failed, with the reason.
    pub fn failures(&self) -> impl Iterator<Item = (&ModuleEntry, &str)> {
        self.modules
            .iter()
            .filter_map(|(module, outcome)| match outcome {
                ModuleOutcome::Failed(reason) => Some((module, reason.as_str())),
                _ => None,
            })
    }

    /// How many modules ended with `outcome`.
    pub fn count(&self, outcome: &ModuleOutcome) -> usize {
        self.modules.iter().filter(|(_, o)| o == outcome).count()
    }
}

/// The module list is unreadable or malformed (an image build error).
#[derive(Debug, thiserror::Error)]
pub enum ModuleListError {
    /// Reading failed.
    #[error("cannot read {MODULE_LIST}: {0}")]
    Read(std::io::Error),
    /// A line does not follow the format.
    #[error(transparent)]
    Format(#[from] easyenclave::module_list::ModuleListError),
}

/// Load every module in the image's list, in order. A missing list means the
/// image needs no modules. A module that fails does not stop the others: the
/// caller reports it by name, and whatever needed it fails later with its
/// own message.
pub fn load_listed(root: &FsRoot) -> Result<ModuleReport, ModuleListError> {
    let text = match std::fs::read_to_string(root.path(MODULE_LIST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ModuleReport {
                modules: Vec::new(),
                elapsed: Duration::ZERO,
            })
        }
        Err(e) => return Err(ModuleListError::Read(e)),
    };
    let list = easyenclave::module_list::parse(&text)?;
    let start = Instant::now();
    let modules = list
        .into_iter()
        .map(|module| {
            let outcome = load_one(&root.path(&module.path));
            (module, outcome)
        })
        .collect();
    Ok(ModuleReport {
        modules,
        elapsed: start.elapsed(),
    })
}

fn load_one(path: &Path) -> ModuleOutcome {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return ModuleOutcome::Failed(format!("cannot open: {e}")),
    };
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) => ModuleOutcome::Loaded,
        Err(Errno::EEXIST) => ModuleOutcome::AlreadyLoaded,
        Err(errno) => ModuleOutcome::Failed(format!("finit_module: {errno}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_list_loads_nothing_and_missing_module_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        assert!(load_listed(&root).unwrap().modules.is_empty());

        std::fs::create_dir_all(root.path("/etc/ee")).unwrap();
        std::fs::write(
            root.path(MODULE_LIST),
            "ee-modules 1\nabsent /lib/absent.ko\n",
        )
        .unwrap();
        let report = load_listed(&root).unwrap();
        let failures: Vec<_> = report.failures().collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0.name, "absent");
        assert!(failures[0].1.contains("cannot open"), "{}", failures[0].1);
    }

    /// A file that is not an ELF module is refused by the kernel (ENOEXEC, or
    /// EPERM without CAP_SYS_MODULE); either way it is reported, not fatal,
    /// and the next module is still tried.
    #[test]
    fn kernel_refusal_is_reported_and_loading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        std::fs::create_dir_all(root.path("/etc/ee")).unwrap();
        std::fs::write(root.path("/bogus.ko"), b"not an ELF module").unwrap();
        std::fs::write(
            root.path(MODULE_LIST),
            "ee-modules 1\nbogus /bogus.ko\nnext /next.ko\n",
        )
        .unwrap();
        let report = load_listed(&root).unwrap();
        assert_eq!(report.modules.len(), 2);
        match &report.modules[0].1 {
            ModuleOutcome::Failed(reason) => {
                assert!(reason.starts_with("finit_module: "), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(&report.modules[1].1, ModuleOutcome::Failed(r) if r.contains("cannot open"))
        );
    }
}
