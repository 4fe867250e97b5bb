//! Finding and reading policy files (SPEC §5.1, §5.4): a directory gives its regular
//! `*.yaml` / `*.yml` files in file-name order; a symlink that leaves the directory, a
//! FIFO or device, or an oversized file is refused unread, so nothing dropped or linked
//! into `policies/` is ever quoted back.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::PolicyError;

/// Largest policy file read, in bytes.
pub const MAX_POLICY_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One policy file found, or one refused without being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    File(PathBuf),
    Refused(PathBuf, &'static str),
}

impl Found {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Found::File(p) | Found::Refused(p, _) => p,
        }
    }
}

const LEAVES_DIR: &str =
    "refused: a symbolic link to a file outside the policy directory (copy the file in instead)";
const NOT_REGULAR: &str = "refused: not a regular file";

/// The last component of a file path as given (`policies//x.yaml` → `x.yaml`).
pub(crate) fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

fn is_policy_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
}

/// The policy files `paths` name: a file as is (it must be a regular file, a symlink
/// the operator named is followed); a directory → its policy files in sorted file-name
/// order, not its subdirectories (so `policies/examples/` is not loaded with
/// `policies/`).
pub(crate) fn find(paths: &[PathBuf]) -> std::io::Result<Vec<Found>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)?;
        if meta.is_dir() {
            out.extend(scan_dir(p)?);
        } else if meta.is_file() {
            out.push(Found::File(p.clone()));
        } else {
            out.push(Found::Refused(p.clone(), NOT_REGULAR));
        }
    }
    Ok(out)
}

fn scan_dir(dir: &Path) -> std::io::Result<Vec<Found>> {
    let root = std::fs::canonicalize(dir)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if !is_policy_name(&path) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            continue;
        }
        if kind.is_symlink() {
            match std::fs::canonicalize(&path) {
                // Directories are never read, wherever they are.
                Ok(target) if target.is_dir() => {}
                Ok(target) if !target.starts_with(&root) => {
                    found.push(Found::Refused(path, LEAVES_DIR));
                }
                Ok(target) if !target.is_file() => found.push(Found::Refused(path, NOT_REGULAR)),
                Ok(_) => found.push(Found::File(path)),
                // A dangling link: refused without saying where it points.
                Err(_) => found.push(Found::Refused(path, "refused: a broken symbolic link")),
            }
        } else if kind.is_file() {
            found.push(Found::File(path));
        } else {
            found.push(Found::Refused(path, NOT_REGULAR));
        }
    }
    found.sort_by(|a, b| a.path().file_name().cmp(&b.path().file_name()));
    Ok(found)
}

/// Reads one found file as UTF-8 text; refusals, read errors, oversized and non-UTF-8
/// files become errors that name the file and never its content.
pub(crate) fn read(found: &Found) -> Result<String, PolicyError> {
    let (path, message) = match found {
        Found::Refused(p, why) => (p, (*why).to_string()),
        Found::File(p) => match read_capped(p) {
            Ok(text) => return Ok(text),
            Err(message) => (p, message),
        },
    };
    Err(PolicyError {
        file: path.to_string_lossy().into_owned(),
        line: 0,
        column: 0,
        message,
    })
}

fn read_capped(p: &Path) -> Result<String, String> {
    let file = std::fs::File::open(p).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(NOT_REGULAR.to_string());
    }
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY_FILE_BYTES {
        return Err(format!(
            "refused: larger than {} MiB",
            MAX_POLICY_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// Bytes that identify `found` for reload polling without reading a refused file.
pub(crate) fn fingerprint_bytes(found: &Found) -> std::io::Result<Vec<u8>> {
    match found {
        Found::Refused(_, why) => Ok(why.as_bytes().to_vec()),
        Found::File(p) => {
            let meta = std::fs::metadata(p)?;
            if meta.len() > MAX_POLICY_FILE_BYTES {
                // Never read it: the load refuses it anyway.
                return Ok(format!("oversized {}", meta.len()).into_bytes());
            }
            std::fs::read(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn directories_give_regular_policy_files_and_refuse_escaping_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("token.txt"), "secret-token").unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::write(dir.join("b.yaml"), "rules: []").unwrap();
        std::fs::write(dir.join("a.yml"), "rules: []").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), "x").unwrap();
        std::fs::create_dir(dir.join("examples")).unwrap();
        std::fs::write(dir.join("examples/x.yaml"), "x").unwrap();
        symlink(dir.join("examples/x.yaml"), dir.join("c-inside.yaml")).unwrap();
        symlink(outside.path().join("token.txt"), dir.join("d-outside.yaml")).unwrap();
        symlink(dir.join("missing"), dir.join("e-broken.yaml")).unwrap();
        let found = find(&[dir.to_path_buf()]).unwrap();
        let names: Vec<(String, bool)> = found
            .iter()
            .map(|f| {
                (
                    f.path().file_name().unwrap().to_string_lossy().into_owned(),
                    matches!(f, Found::File(_)),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("a.yml".to_string(), true),
                ("b.yaml".to_string(), true),
                ("c-inside.yaml".to_string(), true),
                ("d-outside.yaml".to_string(), false),
                ("e-broken.yaml".to_string(), false),
            ]
        );
        let e = read(&found[3]).unwrap_err();
        assert!(e.message.contains("outside the policy directory"), "{e}");
        assert!(!e.to_string().contains("secret-token"), "{e}");
        assert!(!e.to_string().contains("token.txt"), "{e}");
        assert_eq!(read(&found[0]).unwrap(), "rules: []");
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: nothing to test
        }
        let found = find(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(found, [Found::Refused(fifo.clone(), NOT_REGULAR)]);
        assert_eq!(read(&found[0]).unwrap_err().message, NOT_REGULAR);
        // Named explicitly, it is refused as well, unread.
        assert_eq!(
            find(std::slice::from_ref(&fifo)).unwrap(),
            [Found::Refused(fifo, NOT_REGULAR)]
        );
    }

    #[test]
    fn oversized_and_binary_files_are_refused_unquoted() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big.yaml");
        std::fs::write(&big, vec![b'a'; (MAX_POLICY_FILE_BYTES + 1) as usize]).unwrap();
        let e = read(&Found::File(big)).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
        let bin = d.path().join("bin.yaml");
        std::fs::write(&bin, [0xff, 0xfe, b's', b'k']).unwrap();
        assert_eq!(
            read(&Found::File(bin)).unwrap_err().message,
            "not UTF-8 text"
        );
    }
}
