//! Loading and validating policy files (SPEC §5.1, §5.4), the version hash and reload fingerprints.
//!
//! Version / fingerprint scheme (hex SHA-256), over the files in load order:
//! for each file, its file name (the last path component, UTF-8, lossy — so
//! `./policies/x.yaml`, `policies//x.yaml` and an absolute path hash alike),
//! `"\n"`, the content length in bytes as ASCII decimal, `"\n"`, then the
//! content bytes. The built-in policy hashes as one file named
//! `builtin:default.yaml`. So a policy loaded from some paths has
//! `version() == fingerprint(paths)` until a file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::decide::RuleIndex;
use crate::error::{PolicyError, PolicyErrors, PolicyWarning};
use crate::files;
use crate::parse::parse_file;
use crate::testing::PolicyTest;
use crate::{Policy, Rule};

/// The starter policy (SPEC §5.7), also shipped as `policies/default.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../../policies/default.yaml");
/// The name the built-in policy is loaded under.
pub const DEFAULT_POLICY_NAME: &str = "builtin:default.yaml";

fn hash_sources<N: AsRef<str>, T: AsRef<[u8]>>(sources: &[(N, T)]) -> String {
    let mut h = Sha256::new();
    for (name, text) in sources {
        let text = text.as_ref();
        h.update(files::file_name(name.as_ref()).as_bytes());
        h.update(b"\n");
        h.update(text.len().to_string().as_bytes());
        h.update(b"\n");
        h.update(text);
    }
    hex::encode(h.finalize())
}

/// Cheap hash of the policy files' names and contents (see the module doc
/// for the scheme): poll it (~500 ms) and reload when it changes. Equal to
/// [`Policy::version`] of a policy loaded from the same, unchanged paths. A file
/// the load would refuse (a symlink leaving the directory, a FIFO) is not read.
pub fn fingerprint(paths: &[PathBuf]) -> std::io::Result<String> {
    let found = files::find(paths)?;
    let mut sources = Vec::with_capacity(found.len());
    for f in &found {
        sources.push((
            f.path().to_string_lossy().into_owned(),
            files::fingerprint_bytes(f)?,
        ));
    }
    Ok(hash_sources(&sources))
}

impl Policy {
    /// Loads files and/or directories, rules concatenated in order. A directory
    /// gives its regular `*.yaml` / `*.yml` files (not subdirectories) in sorted
    /// file-name order; a symlink in it that leads outside it is refused unread.
    /// All problems are reported at once.
    pub fn load(paths: &[PathBuf]) -> Result<Policy, PolicyErrors> {
        Self::load_inner(paths, None)
    }

    /// Like [`Policy::load`], and also warns about resource and action names that
    /// neither a built-in mapping nor one of `custom` produces (see
    /// [`Policy::name_warnings`]) — in [`Policy::warnings`], or in
    /// [`PolicyErrors::warnings`] next to the errors when the policy does not load.
    pub fn load_with_intents(
        paths: &[PathBuf],
        custom: &[sudomode_intent::CustomIntent],
    ) -> Result<Policy, PolicyErrors> {
        Self::load_inner(paths, Some(custom))
    }

    fn load_inner(
        paths: &[PathBuf],
        custom: Option<&[sudomode_intent::CustomIntent]>,
    ) -> Result<Policy, PolicyErrors> {
        let mut errors = Vec::new();
        let mut sources: Vec<(String, String)> = Vec::new();
        for p in paths {
            let found = match files::find(std::slice::from_ref(p)) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(io_error(p, &e));
                    continue;
                }
            };
            if found.is_empty() {
                errors.push(PolicyError {
                    file: p.to_string_lossy().into_owned(),
                    line: 0,
                    column: 0,
                    message: "directory holds no *.yaml or *.yml policy file".to_string(),
                });
            }
            for f in &found {
                match files::read(f) {
                    Ok(text) => sources.push((f.path().to_string_lossy().into_owned(), text)),
                    Err(e) => errors.push(e),
                }
            }
        }
        if paths.is_empty() {
            errors.push(PolicyError {
                file: "<policies>".to_string(),
                line: 0,
                column: 0,
                message: "no policy file given".to_string(),
            });
        }
        Self::build(&sources, errors, custom)
    }

    /// Loads in-memory sources `(name, text)`, in order (names are used in
    /// messages and in the version hash).
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<Policy, PolicyErrors> {
        let owned: Vec<(String, String)> = sources
            .iter()
            .map(|(n, t)| (n.as_ref().to_string(), t.as_ref().to_string()))
            .collect();
        Self::build(&owned, Vec::new(), None)
    }

    /// The built-in starter policy (SPEC §5.7), from the embedded
    /// `policies/default.yaml`.
    pub fn builtin() -> Policy {
        match Self::from_sources(&[(DEFAULT_POLICY_NAME, DEFAULT_POLICY_YAML)]) {
            Ok(p) => p,
            // Invariant: the embedded file is validated by the unit test
            // `builtin_policy_loads_and_passes_its_tests`.
            Err(e) => panic!("the embedded starter policy is invalid: {e}"),
        }
    }

    fn build(
        sources: &[(String, String)],
        mut errors: Vec<PolicyError>,
        custom: Option<&[sudomode_intent::CustomIntent]>,
    ) -> Result<Policy, PolicyErrors> {
        let env = Arc::new(cel::Env::stdlib());
        let mut warnings: Vec<PolicyWarning> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut tests: Vec<(PolicyTest, (usize, usize))> = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (name, text) in sources {
            let parsed = parse_file(&env, name, text, &mut errors, &mut warnings);
            for (n, line, column) in parsed.names {
                if let Some((f, l)) = seen.get(&n) {
                    errors.push(PolicyError {
                        file: name.clone(),
                        line,
                        column,
                        message: format!("rule {n:?}: duplicate name (first defined at {f}:{l})"),
                    });
                    continue;
                }
                seen.insert(n, (name.clone(), line));
            }
            rules.extend(parsed.rules);
            tests.extend(parsed.tests);
        }
        // A test's `rule:` must name a rule, unless that rule failed to load
        // (then its own error is already reported).
        if errors.is_empty() {
            for (t, (line, col)) in &tests {
                if let Some(r) = &t.rule
                    && !seen.contains_key(&r.0)
                {
                    errors.push(PolicyError {
                        file: t.file.clone(),
                        line: *line,
                        column: *col,
                        message: format!(
                            "test {:?}: `rule: {}` names no rule in the policy",
                            t.name, r.0
                        ),
                    });
                }
            }
        }
        // File order, then line order (stable: same-line messages keep theirs).
        let order: HashMap<&str, usize> = sources
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        let key = |e: &PolicyError| (order.get(e.file.as_str()).copied().unwrap_or(0), e.line);
        if errors.is_empty() {
            warnings.extend(crate::lint::shadowed(&rules));
        }
        if let Some(custom) = custom {
            warnings.extend(crate::lint::unknown_names(&rules, custom));
        }
        warnings.sort_by_key(|w| key(&w.0));
        if !errors.is_empty() {
            errors.sort_by_key(key);
            return Err(PolicyErrors { errors, warnings });
        }
        let index = RuleIndex::build(&rules);
        Ok(Policy {
            index,
            rules,
            tests: tests.into_iter().map(|(t, _)| t).collect(),
            env,
            version: hash_sources(sources),
            loaded_at: time::OffsetDateTime::now_utc(),
            files: sources.iter().map(|(n, _)| n.clone()).collect(),
            warnings,
            grant_conditions: Default::default(),
        })
    }
}

fn io_error(p: &Path, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: p.to_string_lossy().into_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_scheme() {
        let a = hash_sources(&[("a.yaml", "x")]);
        let mut h = Sha256::new();
        h.update(b"a.yaml\n1\nx");
        assert_eq!(a, hex::encode(h.finalize()));
        assert_ne!(a, hash_sources(&[("b.yaml", "x")]));
        // However the path is spelled.
        for spelled in ["./a.yaml", "policies//a.yaml", "/srv/policies/a.yaml"] {
            assert_eq!(hash_sources(&[(spelled, "x")]), a, "{spelled}");
        }
        assert_eq!(files::file_name(DEFAULT_POLICY_NAME), DEFAULT_POLICY_NAME);
    }
}
