//! Where `dev run`'s readers got to: a JSON object of key → position in the state
//! directory, rewritten whole on every move, read back at the next start. Shared by the
//! event source mappings (`checkpoints.json`) and the archive (`archive-checkpoints.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub struct Checkpoints {
    file: PathBuf,
    positions: Mutex<BTreeMap<String, String>>,
}

impl Checkpoints {
    /// The checkpoints `file` holds; none when it is missing or unreadable.
    pub fn load(file: PathBuf) -> Self {
        let positions = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Self {
            file,
            positions: Mutex::new(positions),
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    /// Moves `key` to `position` and writes the file (a failed write is reported and the
    /// run goes on: the next start re-reads from the last position written).
    pub fn set(&self, key: &str, position: &str) {
        let text = {
            let mut c = self.lock();
            c.insert(key.to_owned(), position.to_owned());
            serde_json::to_string_pretty(&*c).unwrap_or_default()
        };
        if let Err(e) = std::fs::write(&self.file, text) {
            eprintln!("dev run: cannot write {}: {e}", self.file.display());
        }
    }

    /// Forgets `key` (in memory: the next `set` writes the file).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_restart_and_a_bad_file_starts_empty() {
        let dir = std::env::temp_dir().join(format!("sw-checkpoints-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("checkpoints.json");
        let c = Checkpoints::load(file.clone());
        assert_eq!(c.get("a"), None);
        c.set(
            "a",
            "49590338271490256608559692538361571095921575989136588898",
        );
        c.set("b", "7");
        c.forget("b");
        c.set("c", "9");
        let again = Checkpoints::load(file.clone());
        assert_eq!(
            again.get("a").as_deref(),
            Some("49590338271490256608559692538361571095921575989136588898")
        );
        assert_eq!(again.get("b"), None);
        assert_eq!(again.get("c").as_deref(), Some("9"));
        std::fs::write(&file, "{not json").unwrap();
        assert_eq!(Checkpoints::load(file).get("a"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
