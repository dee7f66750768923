//! Kernel modules from an unpacked kernel package: dependency resolution via
//! `modules.dep` and decompression of `.ko.xz` files.
//!
//! `modules.dep` (written by depmod) has one line per module,
//! `kernel/path/name.ko[.xz]: dep1.ko.xz dep2.ko.xz ...`, paths relative to
//! the modules directory, and lists each module's dependencies transitively.
//! Module names are file names without `.ko*`, with `-` and `_` equivalent
//! (the kernel's own rule): `tdx-guest.ko.xz` is the module `tdx_guest`.
//! `modules.builtin` lists the modules compiled into the kernel, so that a
//! list shared between kernel configurations may name them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why modules could not be resolved or read.
#[derive(Debug, Error)]
pub enum ModuleError {
    /// A file of the modules directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The modules directory's name is not a kernel release string.
    #[error("cannot take a kernel release from the modules directory {0}: its name is not UTF-8")]
    BadRelease(PathBuf),
    /// A `modules.dep` line is not `path: deps...`.
    #[error("{path}:{line}: expected `module.ko: dependencies...`, got {text:?}")]
    MalformedDep {
        /// The modules.dep file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A dependency named in `modules.dep` has no line of its own.
    #[error("modules.dep: {module} depends on {dependency}, which has no entry")]
    MissingDependency {
        /// The module whose line names the dependency.
        module: String,
        /// The dependency's path.
        dependency: String,
    },
    /// A requested module is neither in `modules.dep` nor built in.
    #[error("module {name:?} is not in {dir}/modules.dep and not built into the kernel")]
    UnknownModule {
        /// The requested name.
        name: String,
        /// The modules directory.
        dir: PathBuf,
    },
    /// `modules.dep` has a dependency cycle (depmod never writes one).
    #[error("modules.dep has a dependency cycle through {0}")]
    Cycle(String),
    /// The module file uses a compression this tool does not read.
    #[error("module file {0}: unsupported compression (supported: .ko, .ko.xz)")]
    UnsupportedCompression(String),
    /// The `.ko.xz` stream is corrupt.
    #[error("decompressing {path}: {message}")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
}

/// One loadable module as listed in `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Canonical module name (`tdx_guest`).
    pub name: String,
    /// Path relative to the modules directory, as in `modules.dep`.
    pub path: String,
    /// Paths of the modules it needs (all of them, as depmod lists them).
    pub dependencies: Vec<String>,
}

impl Module {
    /// The path with its compression suffix removed (`kernel/x/a.ko`): where
    /// the decompressed module goes under `lib/modules/<release>/`.
    pub fn uncompressed_path(&self) -> &str {
        self.path.strip_suffix(".xz").unwrap_or(&self.path)
    }
}

/// The requested modules in load order, plus requested names that are
/// built into the kernel (nothing to load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<'a> {
    /// Modules to load, each after everything it depends on.
    pub load_order: Vec<&'a Module>,
    /// Requested names found in `modules.builtin`.
    pub builtin: Vec<String>,
}

/// The modules directory of one kernel release (`.../lib/modules/<release>`).
#[derive(Debug, Clone)]
pub struct ModuleTree {
    dir: PathBuf,
    release: String,
    by_path: BTreeMap<String, Module>,
    path_by_name: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    /// Read `modules.dep` and `modules.builtin` from `dir`. The kernel
    /// release is the name of `dir` after resolving symlinks.
    pub fn open(dir: &Path) -> Result<Self, ModuleError> {
        let resolved = fs::canonicalize(dir).map_err(|source| ModuleError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let release = resolved
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ModuleError::BadRelease(resolved.clone()))?
            .to_owned();
        let dep_path = resolved.join("modules.dep");
        let dep_text = read_text(&dep_path)?;
        let builtin_path = resolved.join("modules.builtin");
        let builtin_text = read_text(&builtin_path)?;
        Self::from_parts(resolved, release, &dep_path, &dep_text, &builtin_text)
    }

    /// Build from the text of `modules.dep` and `modules.builtin`
    /// (`dep_path` only names the file in errors).
    pub fn from_parts(
        dir: PathBuf,
        release: String,
        dep_path: &Path,
        modules_dep: &str,
        modules_builtin: &str,
    ) -> Result<Self, ModuleError> {
        let mut by_path = BTreeMap::new();
        let mut path_by_name = BTreeMap::new();
        for (index, line) in modules_dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = || ModuleError::MalformedDep {
                path: dep_path.to_owned(),
                line: index + 1,
                text: line.to_owned(),
            };
            let (path, deps) = line.split_once(':').ok_or_else(malformed)?;
            let path = path.trim();
            let name = module_name(path).ok_or_else(malformed)?;
            let dependencies: Vec<String> = deps.split_whitespace().map(str::to_owned).collect();
            if dependencies.iter().any(|d| module_name(d).is_none()) {
                return Err(malformed());
            }
            path_by_name.insert(name.clone(), path.to_owned());
            by_path.insert(
                path.to_owned(),
                Module {
                    name,
                    path: path.to_owned(),
                    dependencies,
                },
            );
        }
        let builtin = modules_builtin
            .lines()
            .filter_map(|l| module_name(l.trim()))
            .collect();
        Ok(ModuleTree {
            dir,
            release,
            by_path,
            path_by_name,
            builtin,
        })
    }

    /// The kernel release (`7.3.4+deb13-cloud-amd64`).
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The (symlink-resolved) modules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Order `names` and everything they depend on so that each module comes
    /// after its dependencies; each module appears once. Built-in names are
    /// reported separately; unknown names are an error.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Resolution<'_>, ModuleError> {
        let mut order = Vec::new();
        let mut builtin = Vec::new();
        let mut done = BTreeSet::new();
        for requested in names {
            let requested = requested.as_ref();
            let name = canonical_name(requested);
            match self
                .path_by_name
                .get(&name)
                .and_then(|p| self.by_path.get(p))
            {
                Some(module) => self.visit(module, &mut done, &mut BTreeSet::new(), &mut order)?,
                None if self.builtin.contains(&name) => {
                    if !builtin.contains(&name) {
                        builtin.push(name);
                    }
                }
                None => {
                    return Err(ModuleError::UnknownModule {
                        name: requested.to_owned(),
                        dir: self.dir.clone(),
                    })
                }
            }
        }
        Ok(Resolution {
            load_order: order,
            builtin,
        })
    }

    /// Depth-first, dependencies first; `visiting` catches cycles.
    fn visit<'a>(
        &'a self,
        module: &'a Module,
        done: &mut BTreeSet<&'a str>,
        visiting: &mut BTreeSet<&'a str>,
        order: &mut Vec<&'a Module>,
    ) -> Result<(), ModuleError> {
        if done.contains(module.path.as_str()) {
            return Ok(());
        }
        if !visiting.insert(&module.path) {
            return Err(ModuleError::Cycle(module.path.clone()));
        }
        for dependency in &module.dependencies {
            let needed =
                self.by_path
                    .get(dependency)
                    .ok_or_else(|| ModuleError::MissingDependency {
                        module: module.path.clone(),
                        dependency: dependency.clone(),
                    })?;
            self.visit(needed, done, visiting, order)?;
        }
        visiting.remove(module.path.as_str());
        done.insert(&module.path);
        order.push(module);
        Ok(())
    }

    /// Read a module file and return it uncompressed.
    pub fn read_module(&self, module: &Module) -> Result<Vec<u8>, ModuleError> {
        let path = self.dir.join(&module.path);
        let raw = fs::read(&path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        if module.path.ends_with(".ko") {
            Ok(raw)
        } else if module.path.ends_with(".ko.xz") {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).map_err(|e| {
                ModuleError::Decompress {
                    path,
                    message: e.to_string(),
                }
            })?;
            Ok(out)
        } else {
            Err(ModuleError::UnsupportedCompression(module.path.clone()))
        }
    }
}

/// The module name of a module file path (`a/tdx-guest.ko.xz` -> `tdx_guest`),
/// or `None` if the file name is not `<name>.ko` or `<name>.ko.<compression>`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let (stem, suffix) = file.split_once(".ko")?;
    // `.ko` alone or followed by a compression suffix (`.ko.xz`).
    if stem.is_empty() || !(suffix.is_empty() || suffix.starts_with('.')) {
        return None;
    }
    Some(canonical_name(stem))
}

/// Module names treat `-` and `_` as the same character; `_` is canonical.
fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

fn read_text(path: &Path) -> Result<String, ModuleError> {
    fs::read_to_string(path).map_err(|source| ModuleError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dependency lines of the modules the guest loads, as in Debian's
    /// 7.3 cloud kernel (written by depmod), plus an unrelated module.
    const DEP: &str = "\
kernel/fs/configfs/configfs.ko.xz:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
kernel/drivers/firmware/qemu_fw_cfg.ko.xz:
kernel/drivers/virt/coco/tdx-guest/tdx-guest.ko.xz: kernel/drivers/virt/coco/guest/tsm_report.ko.xz kernel/fs/configfs/configfs.ko.xz
kernel/drivers/virt/coco/guest/tsm_report.ko.xz: kernel/fs/configfs/configfs.ko.xz
kernel/drivers/block/virtio_blk.ko.xz:
";
    const BUILTIN: &str = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n";

    fn tree(dep: &str) -> Result<ModuleTree, ModuleError> {
        ModuleTree::from_parts(
            PathBuf::from("/m"),
            "7.3.4".into(),
            Path::new("/m/modules.dep"),
            dep,
            BUILTIN,
        )
    }

    fn names(resolution: &Resolution) -> Vec<String> {
        resolution
            .load_order
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let tree = tree(DEP).unwrap();
        let r = tree
            .resolve(&[
                "tdx-guest",
                "virtio_net",
                "qemu_fw_cfg",
                "tsm_report",
                "virtio_pci",
            ])
            .unwrap();
        assert_eq!(
            names(&r),
            [
                "configfs",
                "tsm_report",
                "tdx_guest",
                "failover",
                "net_failover",
                "virtio_net",
                "qemu_fw_cfg"
            ]
            .map(String::from)
        );
        assert_eq!(r.builtin, ["virtio_pci"]);
    }

    #[test]
    fn order_respects_dependencies_that_modules_dep_lists_late() {
        // tsm_report is listed before configfs on tdx-guest's line, but needs
        // it: the recursive walk must still load configfs first.
        let tree = tree(DEP).unwrap();
        let r = tree.resolve(&["tdx_guest"]).unwrap();
        let order = names(&r);
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(pos("configfs") < pos("tsm_report"), "{order:?}");
        assert!(pos("tsm_report") < pos("tdx_guest"), "{order:?}");
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(
            module_name("kernel/a/tdx-guest.ko.xz").as_deref(),
            Some("tdx_guest")
        );
        assert_eq!(module_name("x.ko").as_deref(), Some("x"));
        assert_eq!(module_name("kernel/a/readme.txt"), None);
        assert_eq!(module_name("kernel/a/x.kobj"), None);
        assert_eq!(module_name("kernel/a/.ko"), None);
        let tree = tree(DEP).unwrap();
        let r = tree.resolve(&["qemu_fw_cfg"]).unwrap();
        assert_eq!(
            r.load_order[0].uncompressed_path(),
            "kernel/drivers/firmware/qemu_fw_cfg.ko"
        );
    }

    #[test]
    fn unknown_module_is_an_error() {
        let tree = tree(DEP).unwrap();
        let err = tree.resolve(&["e1000"]).unwrap_err();
        assert!(err.to_string().contains("\"e1000\""), "{err}");
    }

    #[test]
    fn malformed_and_inconsistent_modules_dep_are_errors() {
        let err = tree("kernel/a.ko.xz kernel/b.ko.xz\n").unwrap_err();
        assert!(err.to_string().contains("modules.dep:1"), "{err}");
        let err = tree("kernel/a.ko.xz: kernel/b.ko.xz\n")
            .unwrap()
            .resolve(&["a"])
            .unwrap_err();
        assert!(
            matches!(err, ModuleError::MissingDependency { .. }),
            "{err}"
        );
        let err = tree("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n")
            .unwrap()
            .resolve(&["a"])
            .unwrap_err();
        assert!(matches!(err, ModuleError::Cycle(_)), "{err}");
    }

    #[test]
    fn reads_plain_modules_and_rejects_other_compressions() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.ko"), b"\x7fELF-a").unwrap();
        fs::write(dir.path().join("b.ko.zst"), b"zstd").unwrap();
        let tree = ModuleTree::from_parts(
            dir.path().to_owned(),
            "r".into(),
            Path::new("modules.dep"),
            "a.ko:\nb.ko.zst:\n",
            "",
        )
        .unwrap();
        let r = tree.resolve(&["a", "b"]).unwrap();
        assert_eq!(tree.read_module(r.load_order[0]).unwrap(), b"\x7fELF-a");
        let err = tree.read_module(r.load_order[1]).unwrap_err();
        assert!(
            matches!(err, ModuleError::UnsupportedCompression(_)),
            "{err}"
        );
    }
}
