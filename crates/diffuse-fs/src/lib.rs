//! Files as every diffuse crate reads and writes them.
//!
//! - **Reads are bounded.** Only regular files are read: a device (`/dev/zero`), a FIFO or a
//!   directory named as an input, directly or through a symlink, is an error naming the path,
//!   never an endless read. No read takes more than a limit its caller states ([`Limit`]):
//!   [`Limit::CONFIG`] for text configs, whose formats declare no size, and the memory
//!   available now for data, weights and checkpoints ([`Limit::memory`]), whose headers do
//!   but may lie.
//! - **Writes are atomic.** An output goes to a temporary file beside it (`.NAME.tmp-PID`,
//!   [`temp_path`]) and is renamed over the target, so a failed write (a full disk, a kill)
//!   leaves the previous file whole and never a truncated one. A symlink is followed to the
//!   file it names, which is replaced. A character device or a FIFO (`/dev/null`, a pipe) is
//!   written in place, as there is no file to keep; any other target that is not a regular
//!   file (a directory, a block device) is refused.
//! - **Files are compared by identity** ([`FileId`]: device and inode), so a hard link or a
//!   symlink to a file is that file.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("{path} is {kind}, not a regular file; diffuse reads and writes regular files only")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is {size} bytes, more than the {limit} bytes {what}")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The most bytes a read may take, and what the number is (for the error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub what: &'static str,
}

impl Limit {
    /// Text configs (run configs, diffusers configs, `model_index.json`): a few kilobytes in
    /// practice.
    pub const CONFIG: Limit = Limit {
        bytes: 64 << 20,
        what: "a config file may hold",
    };

    /// Data, weights and checkpoints: no more than the memory available now (all of it when
    /// that cannot be read).
    pub fn memory() -> Limit {
        Limit {
            bytes: available_memory().unwrap_or(u64::MAX),
            what: "of memory this machine has available",
        }
    }
}

/// What a non-regular file is, for messages.
fn kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens a regular file for reading, following symlinks, and returns it with its length. A
/// FIFO is opened without blocking (no writer needs to appear) and then refused.
pub fn open(path: &Path) -> Result<(File, u64), FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| FsError::Read {
        path: path.into(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: path.into(),
            kind: kind(&meta),
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of a regular file of at most `limit` bytes (checked before reading, and again
/// while reading, for files that grow or report no size, as `/proc`'s do).
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    let (file, len) = open(path)?;
    let too_large = |size| FsError::TooLarge {
        path: path.into(),
        size,
        limit: limit.bytes,
        what: limit.what,
    };
    if len > limit.bytes {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FsError::Read {
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, limit: Limit) -> Result<String, FsError> {
    String::from_utf8(read(path, limit)?).map_err(|e| FsError::Read {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// MemAvailable from `/proc/meminfo`, in bytes; `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let limit = Limit {
        bytes: 1 << 20,
        what: "",
    };
    let text = read_to_string(Path::new("/proc/meminfo"), limit).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The temporary file an output is written to before it is renamed into place:
/// `.NAME.tmp-PID`, with NAME's extension repeated at the end for writers that choose their
/// format by it (`.samples.png.tmp-42.png`).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}{ext}", std::process::id()))
}

/// Whether a file name is one of [`temp_path`]'s (what a killed process leaves behind).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Where a write goes.
enum Target {
    /// A regular file, new or replaced.
    File(PathBuf),
    /// A character device or a FIFO, written in place.
    Stream(PathBuf),
}

/// Whether `meta` is a character device or a FIFO: an output with no contents to keep.
fn is_stream(meta: &Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() || meta.file_type().is_fifo()
}

/// Whether `path` may be written by [`write()`]: absent, a regular file, or a stream.
pub fn writable_kind(path: &Path) -> Result<(), FsError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() && !is_stream(&m) => Err(FsError::NotRegular {
            path: path.into(),
            kind: kind(&m),
        }),
        _ => Ok(()),
    }
}

/// The file a write to `path` replaces: `path`, or the file its symlinks lead to. An existing
/// target must be a regular file the user may write, or a stream.
fn write_target(path: &Path) -> Result<Target, FsError> {
    let mut target = path.to_path_buf();
    // As the kernel does, give up after 40 links (a loop).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|source| FsError::Write {
                    path: path.into(),
                    source,
                })?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => break,
        }
    }
    match std::fs::metadata(&target) {
        Ok(m) if is_stream(&m) => Ok(Target::Stream(target)),
        Ok(m) if !m.is_file() => Err(FsError::NotRegular {
            path: path.into(),
            kind: kind(&m),
        }),
        Ok(m) if m.permissions().readonly() => Err(FsError::Write {
            path: path.into(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the file is read-only",
            ),
        }),
        _ => Ok(Target::File(target)),
    }
}

/// Writes `path` atomically: `write` fills the temporary file it is given ([`temp_path`]),
/// which then replaces the target. On any error the temporary file is removed and the target
/// is as it was. A replaced file keeps its permissions.
pub fn write_with<E: From<FsError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let target = match write_target(path)? {
        Target::Stream(stream) => return write(&stream),
        Target::File(file) => file,
    };
    let tmp = temp_path(&target);
    let _ = std::fs::remove_file(&tmp);
    let fail = |source: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        FsError::Write {
            path: path.into(),
            source,
        }
    };
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(old) = std::fs::metadata(&target) {
        std::fs::set_permissions(&tmp, old.permissions()).map_err(fail)?;
    }
    std::fs::rename(&tmp, &target).map_err(fail)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically ([`write_with`]).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|source| FsError::Write {
            path: path.into(),
            source,
        })
    })
}

/// A file's identity: two paths with the same id are the same file (a hard link, or a
/// symlink followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The id of the file `path` names, following symlinks; `None` when there is none.
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diffuse-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_by_name() {
        let dir = scratch("kinds");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let link = dir.join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, kind) in [
            (PathBuf::from("/dev/zero"), "a device"),
            (link, "a device"),
            (fifo, "a FIFO"),
            (dir.clone(), "a directory"),
        ] {
            let err = read(&path, Limit::CONFIG).unwrap_err().to_string();
            assert!(
                err.contains(kind) && err.contains(path.to_str().unwrap()),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_stop_at_the_limit() {
        let dir = scratch("limit");
        let path = dir.join("big");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let limit = |bytes| Limit {
            bytes,
            what: "test",
        };
        assert_eq!(read(&path, limit(100)).unwrap().len(), 100);
        let err = read(&path, limit(99)).unwrap_err().to_string();
        assert!(err.contains("100 bytes") && err.contains("99"), "{err}");
        // /proc files report no size; the read still stops.
        let err = read(Path::new("/proc/self/maps"), limit(10)).unwrap_err();
        assert!(matches!(err, FsError::TooLarge { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = scratch("atomic");
        let path = dir.join("out.npy");
        write(&path, b"old").unwrap();
        let err: Result<(), FsError> = write_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(FsError::Write {
                path: tmp.into(),
                source: std::io::Error::other("disk full"),
            })
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "a temporary is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_the_files_they_name() {
        let dir = scratch("links");
        let file = dir.join("weights");
        std::fs::write(&file, b"w").unwrap();
        let hard = dir.join("hard");
        std::fs::hard_link(&file, &hard).unwrap();
        let soft = dir.join("soft");
        std::os::unix::fs::symlink("weights", &soft).unwrap();
        let id = FileId::of(&file).unwrap();
        assert_eq!(FileId::of(&hard), Some(id));
        assert_eq!(FileId::of(&soft), Some(id));
        // A write through the symlink replaces the file it names; the link stays a link.
        write(&soft, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert!(
            std::fs::symlink_metadata(&soft)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // /dev/null is written in place, not replaced; a directory is refused.
        write(Path::new("/dev/null"), b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let err = write(&dir, b"x").unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
