//! Power: the ACPI power button and powering off.
//!
//! QEMU's `system_powerdown` (and a host's "shut down" in libvirt) presses
//! the ACPI power button. Without acpid, the press reaches user space only as
//! an input event (`KEY_POWER`) on the "Power Button" evdev device (kernel
//! modules `button` and `evdev`). A watcher thread per such device turns a
//! press into a SIGTERM to this process, so shutdown has one path: the main
//! loop's signal handling.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::unistd::getpid;

use crate::root::FsRoot;
use crate::say;

/// Size of `struct input_event` on 64-bit Linux: timeval (16), type u16,
/// code u16, value i32.
pub const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;

/// Whether a raw input event is a power-key press (value 1; 0 is release,
/// 2 autorepeat).
pub fn is_power_press(event: &[u8; INPUT_EVENT_SIZE]) -> bool {
    let [.., k0, k1, c0, c1, v0, v1, v2, v3] = *event;
    let kind = u16::from_ne_bytes([k0, k1]);
    let code = u16::from_ne_bytes([c0, c1]);
    let value = i32::from_ne_bytes([v0, v1, v2, v3]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Event devices (`/dev/input/eventN`) whose input device is named
/// "Power Button" in sysfs.
pub fn find_power_buttons(root: &FsRoot) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.path("/sys/class/input")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with("event") {
                return None;
            }
            let label = std::fs::read_to_string(entry.path().join("device/name")).ok()?;
            (label.trim() == "Power Button").then(|| root.path(&format!("/dev/input/{name}")))
        })
        .collect();
    found.sort();
    found
}

/// Watch each device in a thread; call `on_press` for every power-key press.
/// A device that cannot be opened or read is logged and left alone.
pub fn watch_buttons(devices: Vec<PathBuf>, on_press: fn()) {
    for device in devices {
        let spawned = std::thread::Builder::new()
            .name("power-button".into())
            .spawn(move || watch_one(&device, on_press));
        if let Err(e) = spawned {
            say!("cannot start power button watcher: {e}");
        }
    }
}

fn watch_one(device: &std::path::Path, on_press: fn()) {
    let mut file = match File::open(device) {
        Ok(f) => f,
        Err(e) => {
            say!("power button {}: cannot open: {e}", device.display());
            return;
        }
    };
    say!("watching power button {}", device.display());
    let mut event = [0u8; INPUT_EVENT_SIZE];
    loop {
        match file.read_exact(&mut event) {
            Ok(()) if is_power_press(&event) => on_press(),
            Ok(()) => {}
            Err(e) => {
                say!("power button {}: read failed: {e}", device.display());
                return;
            }
        }
    }
}

/// The default press action: ask the main loop to shut down.
pub fn request_shutdown() {
    say!("power button pressed: shutting down");
    let _ = kill(getpid(), Signal::SIGTERM);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn event(kind: u16, code: u16, value: i32) -> [u8; INPUT_EVENT_SIZE] {
        let mut e = [0u8; INPUT_EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 115, 1)), "volume up");
        assert!(!is_power_press(&event(0x00, KEY_POWER, 1)), "EV_SYN");
    }

    static PRESSES: AtomicUsize = AtomicUsize::new(0);
    fn count_press() {
        PRESSES.fetch_add(1, Ordering::SeqCst);
    }

    /// A fake sysfs + a FIFO standing in for the evdev node.
    #[test]
    fn watcher_finds_the_button_and_reports_presses() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        for (node, label) in [
            ("event0", "AT Translated Set 2 keyboard"),
            ("event1", "Power Button"),
            ("mouse0", "Power Button"),
        ] {
            let d = root.path(&format!("/sys/class/input/{node}/device"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), format!("{label}\n")).unwrap();
        }
        let found = find_power_buttons(&root);
        assert_eq!(found, vec![root.path("/dev/input/event1")]);

        std::fs::create_dir_all(root.path("/dev/input")).unwrap();
        nix::unistd::mkfifo(&found[0], nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        watch_buttons(found.clone(), count_press);
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .open(&found[0])
            .unwrap();
        fifo.write_all(&event(EV_KEY, 115, 1)).unwrap();
        fifo.write_all(&event(EV_KEY, KEY_POWER, 1)).unwrap();
        fifo.write_all(&event(EV_KEY, KEY_POWER, 0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while PRESSES.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(PRESSES.load(Ordering::SeqCst), 1);
    }
}
