//! dockgate's state directory (`/var/lib/dockgate`): what it must remember across restarts,
//! such as the zone settings it found before changing them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_DIR: &str = "/var/lib/dockgate";

#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {source}")]
pub struct StateError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The stored value, or None when there is none.
    pub fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| StateError {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
            })
    }

    /// Stores a value so that a crash at any moment leaves the old or the new file, never a
    /// torn one: write a temporary file, fsync it, rename it over the old one, fsync the dir.
    pub fn store<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let fail = |source| StateError {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(fail)?;
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let text = serde_json::to_vec_pretty(value)
            .map_err(|error| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?;
        let mut file = fs::File::create(&temporary).map_err(fail)?;
        file.write_all(&text).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        fs::rename(&temporary, &path).map_err(fail)?;
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(fail)
    }

    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(StateError {
                path,
                source: error,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_removes() {
        let dir = std::env::temp_dir().join(format!("dockgate-state-{}", std::process::id()));
        let state = StateDir::new(&dir);
        assert_eq!(state.load::<Vec<String>>("x.json").unwrap(), None);
        state.store("x.json", &vec!["a".to_owned()]).unwrap();
        assert_eq!(
            state.load::<Vec<String>>("x.json").unwrap(),
            Some(vec!["a".to_owned()])
        );
        assert!(!dir.join(".x.json.tmp").exists());
        state.remove("x.json").unwrap();
        state.remove("x.json").unwrap();
        assert_eq!(state.load::<Vec<String>>("x.json").unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
