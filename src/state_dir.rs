//! Persistent device state on disk: one file per device in the state directory, named after
//! the AoE address (`e<shelf>.<slot>.state`).
//!
//! Writes are crash-safe: the document goes to a temporary file in the same directory, which
//! is fsynced, renamed over the old file, and the directory is fsynced so the rename itself is
//! durable. A crash leaves either the old or the new state, never a torn file. A leftover
//! temporary file is ignored on load.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::aoe::{persist, DeviceState};

/// A state directory failure; every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// The directory could not be created or opened.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A state file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A state file exists but does not decode.
    #[error("state file {path} is corrupt ({source}); move it away to start that device afresh")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: persist::DecodeError,
    },
}

/// The directory holding every device's persistent AoE state.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Serializes writers so two saves of one device never interleave their temp files.
    write_lock: Mutex<()>,
}

impl StateDir {
    /// Opens (creating if needed) the state directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<StateDir, StateDirError> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|source| StateDirError::Dir {
            path: path.clone(),
            source,
        })?;
        Ok(StateDir {
            path,
            write_lock: Mutex::new(()),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file for device `shelf.slot`.
    pub fn file_for(&self, shelf: u16, slot: u8) -> PathBuf {
        self.path.join(format!("e{shelf}.{slot}.state"))
    }

    /// Loads a device's state; a missing file is the default (empty) state.
    pub fn load(&self, shelf: u16, slot: u8) -> Result<DeviceState, StateDirError> {
        let path = self.file_for(shelf, slot);
        match fs::read_to_string(&path) {
            Ok(text) => {
                persist::decode(&text).map_err(|source| StateDirError::Corrupt { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DeviceState::default()),
            Err(source) => Err(StateDirError::Io { path, source }),
        }
    }

    /// Saves a device's state crash-safely (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, shelf: u16, slot: u8, state: &DeviceState) -> Result<(), StateDirError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.file_for(shelf, slot);
        let tmp = self.path.join(format!(".e{shelf}.{slot}.state.tmp"));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateDirError::Io { path, source }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(persist::encode(state).as_bytes())
            .map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StateDirError::Dir {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    #[test]
    fn missing_file_is_default_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path().join("state")).unwrap();
        assert_eq!(store.load(1, 2).unwrap(), DeviceState::default());
    }

    #[test]
    fn save_then_load_survives_a_new_handle() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = DeviceState::default();
        state.set_config_string(b"cluster-a").unwrap();
        state.reserve.insert(MacAddr([2, 1, 2, 3, 4, 5])).unwrap();
        StateDir::open(dir.path())
            .unwrap()
            .save(7, 3, &state)
            .unwrap();
        let reopened = StateDir::open(dir.path()).unwrap();
        assert_eq!(reopened.load(7, 3).unwrap(), state);
        assert!(reopened.file_for(7, 3).ends_with("e7.3.state"));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary file left behind: {leftovers:?}"
        );
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        fs::write(store.file_for(1, 1), "garbage = [").unwrap();
        let err = store.load(1, 1).unwrap_err();
        assert!(err.to_string().contains("e1.1.state"), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
