//! The unsealed development image: its marker and the console shell it
//! grants.
//!
//! A dev image's initramfs holds [`DEV_IMAGE_MARKER`]. While it exists and
//! the log holds no seal event, a fatal boot error opens a shell on the
//! console before the TD powers off (`boot`). Sealing unlinks the marker
//! first (`deploy::seal`), so both read the path from here: this module
//! sits below them and depends on nothing but the root and `spawn`. The
//! path itself is an image format, defined in the SDK with the others, since
//! `ee-image` writes the marker.

use crate::root::FsRoot;
use crate::say;

/// Marker file of an unsealed development image: a fatal error opens a
/// console shell instead of powering off straight away. Defined with the
/// image formats in the SDK, since `ee-image` writes it.
pub use easyenclave::image_manifest::DEV_IMAGE_MARKER;

/// On an unsealed dev image (the marker exists under `root` and `sealed` is
/// false), run `/bin/sh` on the console and wait for it to exit. Otherwise
/// do nothing.
pub fn console_shell_if_unsealed(root: &FsRoot, sealed: bool) {
    if !root.path(DEV_IMAGE_MARKER).exists() || sealed {
        return;
    }
    say!("unsealed dev image: starting a console shell; power off when it exits");
    let shell = crate::spawn::spawn(
        &["/bin/sh".to_owned()],
        &["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        crate::spawn::Stdin::Inherit,
        false,
    );
    match shell {
        Ok(pid) => say!("shell exited: {:?}", nix::sys::wait::waitpid(pid, None)),
        Err(e) => say!("cannot start /bin/sh: {e}"),
    }
}
