//! Writer for the SVR4 "newc" cpio format, the archive format the Linux
//! kernel unpacks as an initramfs.
//!
//! Reference: Linux `Documentation/driver-api/early-userspace/buffer-format.rst`.
//! Each entry is a 110-byte ASCII header (magic `070701` and thirteen 8-digit
//! hex fields), the NUL-terminated name padded to a multiple of 4 bytes
//! (counting from the header's start), then the data padded the same way.
//! The archive ends with an entry named `TRAILER!!!`.
//!
//! The writer emits only what a reproducible initramfs needs: every entry is
//! owned by 0:0, inode numbers count up from 1 in write order, and there are
//! no hard links. Callers choose paths, permissions and the mtime.

use std::io::{self, Write};

use thiserror::Error;

/// Name of the entry that ends every newc archive.
const TRAILER: &str = "TRAILER!!!";
/// File type bits (`S_IFMT`) and the types this writer emits.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFLNK: u32 = 0o120_000;
/// Permission bits an entry may carry (`07777`).
const PERMISSION_MASK: u32 = 0o7777;

/// Why an entry could not be written.
#[derive(Debug, Error)]
pub enum CpioError {
    /// The path is empty, contains a NUL byte, or is the trailer's name.
    #[error("cpio entry name {name:?} is not allowed: {reason}")]
    BadName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A newc header field holds at most 32 bits.
    #[error("cpio entry {name:?}: {field} {value} does not fit the 32-bit newc field")]
    FieldTooLarge {
        /// The entry being written.
        name: String,
        /// The header field.
        field: &'static str,
        /// The value that did not fit.
        value: u64,
    },
    /// Permission bits outside `07777`.
    #[error("cpio entry {name:?}: permissions {perm:#o} have bits outside 07777")]
    BadPermissions {
        /// The entry being written.
        name: String,
        /// The rejected permission bits.
        perm: u32,
    },
    /// Writing to the underlying sink failed.
    #[error("writing cpio archive: {0}")]
    Io(#[from] io::Error),
}

/// Streams newc entries to `W`. Call [`CpioWriter::finish`] to write the
/// trailer; dropping the writer without it leaves a truncated archive.
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Start an archive on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_inode: 1,
            offset: 0,
        }
    }

    /// Write a directory entry. `name` is the path inside the archive without
    /// a leading slash (`lib/modules`).
    pub fn directory(&mut self, name: &str, perm: u32, mtime: u32) -> Result<(), CpioError> {
        let mode = type_and_perm(name, S_IFDIR, perm)?;
        // A directory's own "." link plus its entry in the parent.
        self.entry(name, mode, 2, mtime, (0, 0), &[])
    }

    /// Write a regular file entry with its contents.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        mtime: u32,
        data: &[u8],
    ) -> Result<(), CpioError> {
        let mode = type_and_perm(name, S_IFREG, perm)?;
        self.entry(name, mode, 1, mtime, (0, 0), data)
    }

    /// Write a character device node (`dev/console` is 5:1).
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        mtime: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let mode = type_and_perm(name, S_IFCHR, perm)?;
        self.entry(name, mode, 1, mtime, (major, minor), &[])
    }

    /// Write a symbolic link; its data is the target path (permissions are
    /// always 0777, as Linux ignores them).
    pub fn symlink(&mut self, name: &str, mtime: u32, target: &str) -> Result<(), CpioError> {
        let mode = type_and_perm(name, S_IFLNK, 0o777)?;
        self.entry(name, mode, 1, mtime, (0, 0), target.as_bytes())
    }

    /// Write the trailer and return the sink.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.write_header(TRAILER, 0, 0, 1, 0, (0, 0), 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        mtime: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        check_name(name)?;
        let size = u32::try_from(data.len()).map_err(|_| CpioError::FieldTooLarge {
            name: name.to_owned(),
            field: "file size",
            value: data.len() as u64,
        })?;
        let inode = self.next_inode;
        self.next_inode = inode.checked_add(1).ok_or(CpioError::FieldTooLarge {
            name: name.to_owned(),
            field: "inode number",
            value: u64::from(inode) + 1,
        })?;
        self.write_header(name, inode, mode, nlink, mtime, rdev, size)?;
        self.write_padded(data)
    }

    #[allow(clippy::too_many_arguments)] // one argument per header field
    fn write_header(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        nlink: u32,
        mtime: u32,
        rdev: (u32, u32),
        size: u32,
    ) -> Result<(), CpioError> {
        let name_size = name.len() + 1; // counts the terminating NUL
        let name_size = u32::try_from(name_size).map_err(|_| CpioError::FieldTooLarge {
            name: name.to_owned(),
            field: "name size",
            value: name_size as u64,
        })?;
        let (rdev_major, rdev_minor) = rdev;
        let header = format!(
            "070701{inode:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {dev_major:08x}{dev_minor:08x}{rdev_major:08x}{rdev_minor:08x}{name_size:08x}{check:08x}",
            uid = 0,
            gid = 0,
            dev_major = 0,
            dev_minor = 0,
            check = 0,
        );
        self.write_all(header.as_bytes())?;
        let mut name_bytes = Vec::with_capacity(name.len() + 1);
        name_bytes.extend_from_slice(name.as_bytes());
        name_bytes.push(0);
        self.write_padded(&name_bytes)
    }

    /// Write `bytes`, then NULs up to the next multiple of 4 from the start.
    fn write_padded(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.write_all(bytes)?;
        let pad = (4 - self.offset % 4) % 4;
        self.write_all(&[0u8; 3][..pad as usize])
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

fn type_and_perm(name: &str, file_type: u32, perm: u32) -> Result<u32, CpioError> {
    if perm & !PERMISSION_MASK != 0 {
        return Err(CpioError::BadPermissions {
            name: name.to_owned(),
            perm,
        });
    }
    Ok(file_type | perm)
}

fn check_name(name: &str) -> Result<(), CpioError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name == TRAILER {
        "reserved for the archive trailer"
    } else {
        return Ok(());
    };
    Err(CpioError::BadName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One file "a" holding "hi", mtime 0x10, then the trailer; the expected
    /// bytes are written out by hand from the newc layout described above.
    #[test]
    fn file_entry_matches_the_newc_layout() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a", 0o644, 0x10, b"hi").unwrap();
        let out = w.finish().unwrap();

        let mut expected = Vec::new();
        // magic, ino 1, mode 0100644, uid 0, gid 0, nlink 1, mtime 0x10, size 2,
        // devmajor/minor 0, rdevmajor/minor 0, namesize 2 ("a\0"), check 0
        expected.extend_from_slice(
            b"070701\
              00000001000081a4000000000000000000000001000000100000000200000000\
              00000000000000000000000000000002\
              00000000",
        );
        // 110 + 2 = 112: already aligned, no name padding.
        expected.extend_from_slice(b"a\0");
        // data "hi" ends at 114: two bytes of padding to 116.
        expected.extend_from_slice(b"hi\0\0");
        expected.extend_from_slice(
            b"070701\
              00000000000000000000000000000000000000010000000000000000\
              000000000000000000000000000000000000000b00000000",
        );
        // 116 + 110 + 11 = 237: three bytes of padding to 240.
        expected.extend_from_slice(b"TRAILER!!!\0\0\0\0");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn directory_and_device_carry_their_type_bits() {
        let mut w = CpioWriter::new(Vec::new());
        w.directory("dev", 0o755, 0).unwrap();
        w.char_device("dev/console", 0o600, 0, 5, 1).unwrap();
        let out = w.finish().unwrap();
        let text = String::from_utf8_lossy(&out);
        // mode field of the directory: 040755, nlink 2
        assert_eq!(&text[14..22], "000041ed");
        assert_eq!(&text[38..46], "00000002");
        // second header starts at 112 + 4 ("dev\0", 110+4=114 -> 116)
        let second = &text[116..];
        assert!(second.starts_with("07070100000002"));
        assert_eq!(&second[14..22], "00002180"); // 020600
        assert_eq!(&second[78..86], "00000005"); // rdevmajor
        assert_eq!(&second[86..94], "00000001"); // rdevminor
    }

    #[test]
    fn rejects_bad_names_and_permissions() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(
            w.file("", 0o644, 0, b""),
            Err(CpioError::BadName {
                reason: "empty",
                ..
            })
        ));
        assert!(matches!(
            w.file("a\0b", 0o644, 0, b""),
            Err(CpioError::BadName { .. })
        ));
        assert!(matches!(
            w.directory(TRAILER, 0o755, 0),
            Err(CpioError::BadName { .. })
        ));
        let err = w.file("x", 0o100_644, 0, b"").unwrap_err();
        assert!(err.to_string().contains("outside 07777"), "{err}");
    }
}
