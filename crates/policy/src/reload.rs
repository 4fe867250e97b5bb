//! Hot reload by polling (SPEC §5.5): no file-system notification dependency.
//!
//! ```text
//! let mut watcher = PolicyWatcher::new(paths.clone(), policy.version());
//! loop {
//!     sleep(500ms);
//!     match watcher.poll() {
//!         None => {}                        // unchanged
//!         Some(Ok(new)) => swap(new),       // audit `policy.loaded`
//!         Some(Err(errors)) => log(errors), // keep the last good policy; audit `policy.reload_failed`
//!     }
//! }
//! ```

use std::path::PathBuf;

use crate::Policy;
use crate::error::{PolicyError, PolicyErrors};
use crate::load::fingerprint;

/// Remembers the last fingerprint seen and reloads when it changes. An
/// invalid change is reported once (until the files change again).
#[derive(Debug, Clone)]
pub struct PolicyWatcher {
    paths: Vec<PathBuf>,
    last: String,
}

impl PolicyWatcher {
    /// `current_version` is the loaded policy's [`Policy::version`].
    pub fn new(paths: Vec<PathBuf>, current_version: &str) -> PolicyWatcher {
        PolicyWatcher {
            paths,
            last: current_version.to_string(),
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// `None` when nothing changed; otherwise the result of reloading.
    pub fn poll(&mut self) -> Option<Result<Policy, PolicyErrors>> {
        let fp = match fingerprint(&self.paths) {
            Ok(fp) => fp,
            Err(e) => {
                let marker = format!("io:{e}");
                if marker == self.last {
                    return None;
                }
                self.last = marker;
                let file = self
                    .paths
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Some(Err(PolicyErrors(vec![PolicyError {
                    file,
                    line: 0,
                    column: 0,
                    message: format!("cannot read policy files: {e}"),
                }])));
            }
        };
        if fp == self.last {
            return None;
        }
        match Policy::load(&self.paths) {
            Ok(p) => {
                self.last = p.version().to_string();
                Some(Ok(p))
            }
            Err(e) => {
                self.last = fp;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(
            &f,
            "rules:\n  - name: a\n    resource: x\n    decision: ALLOW\n",
        )
        .unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let p = Policy::load(&paths).unwrap();
        let mut w = PolicyWatcher::new(paths, p.version());
        assert!(w.poll().is_none());
        std::fs::write(
            &f,
            "rules:\n  - name: a\n    resource: x\n    decision: maybe\n",
        )
        .unwrap();
        assert!(matches!(w.poll(), Some(Err(_))));
        assert!(w.poll().is_none(), "an invalid change is reported once");
        std::fs::write(
            &f,
            "rules:\n  - name: b\n    resource: x\n    decision: DENY\n",
        )
        .unwrap();
        let new = w.poll().unwrap().unwrap();
        assert_eq!(new.rules()[0].name.as_str(), "b");
        assert!(w.poll().is_none());
        std::fs::remove_file(&f).unwrap();
        // The directory is now empty: fingerprint is of no files, the load fails.
        assert!(matches!(w.poll(), Some(Err(_))));
        assert!(w.poll().is_none());
    }
}
