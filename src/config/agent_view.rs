//! The configuration as `sudomode env` and `exec` see it: the proxy and
//! dashboard addresses, the CA and at most one agent's own token, read
//! without resolving any other secret reference (SPEC §1), plus the names of
//! every variable the config reads through `${env:…}`, which `exec` keeps
//! from the agent.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{
    Config, ConfigError, ConfigFile, RawConfig, checked_tree, cwd, discovered_path, secrets,
};

/// Keys `env`/`exec` read (`section.key`); every other key, secrets
/// included, is left alone.
const NEEDED: [(&str, &str); 4] = [
    ("proxy", "listen"),
    ("dashboard", "listen"),
    ("dashboard", "public_url"),
    ("ca", "dir"),
];

/// What the agent's side needs, and what it must not inherit.
#[derive(Debug)]
pub struct AgentView {
    /// Only the needed keys are set; `agents` holds at most the one asked for.
    pub config: Config,
    /// Variables named by `${env:…}` anywhere in the file.
    pub env_refs: Vec<String>,
}

impl AgentView {
    /// Discovers the config like [`Config::discover`] and reads the agent's
    /// view of it; `agent` names the one agent whose token must resolve.
    pub fn discover(explicit: Option<&Path>, agent: Option<&str>) -> Result<Self, ConfigError> {
        match discovered_path(explicit) {
            Some(p) => {
                let f = ConfigFile::read(&p)?;
                Self::parse(&f.text, Some(f.abs), &f.base, &f.name, agent)
            }
            None => Ok(AgentView {
                config: Config::resolve(RawConfig::default(), None, &cwd(), "<defaults>", &[])?,
                env_refs: Vec::new(),
            }),
        }
    }

    pub fn parse(
        text: &str,
        file: Option<PathBuf>,
        base: &Path,
        name: &str,
        agent: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let tree = checked_tree(text, name)?;
        let env_refs = secrets::env_names(&tree);
        let mut needed = needed_part(&tree);
        // Found before expansion: a name held in a secret reference cannot be
        // matched without reading it, and names are not secrets.
        if let Some(wanted) = agent {
            let (index, entry) = find_agent(&tree, wanted).ok_or_else(|| ConfigError::Invalid {
                file: name.to_string(),
                key: "agents".into(),
                message: format!("no agent named `{wanted}`"),
            })?;
            // Keyed as in the file, so errors name `agents[3].token`.
            let mut agents = vec![Value::Null; index];
            agents.push(entry);
            needed.insert("agents".into(), Value::Array(agents));
        }
        let mut needed = Value::Object(needed);
        let from_refs = super::expand(&mut needed, base, name)?;
        if let Some(Value::Array(agents)) = needed.get_mut("agents") {
            agents.retain(|a| !a.is_null());
        }
        let raw = super::typed(needed, name)?;
        Ok(AgentView {
            config: Config::resolve(raw, file, base, name, &from_refs)?,
            env_refs,
        })
    }
}

/// The [`NEEDED`] keys of the file's tree, unexpanded.
fn needed_part(tree: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for (section, key) in NEEDED {
        if let Some(v) = tree.get(section).and_then(|s| s.get(key)) {
            let entry = out
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(key.to_string(), v.clone());
            }
        }
    }
    out
}

/// Position and entry of the agent called `name`.
fn find_agent(tree: &Value, name: &str) -> Option<(usize, Value)> {
    tree.get("agents")?
        .as_array()?
        .iter()
        .enumerate()
        .find(|(_, a)| a.get("name").and_then(Value::as_str) == Some(name))
        .map(|(i, a)| (i, a.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "proxy:\n  listen: 127.0.0.1:9080\n\
        operators:\n  - {name: a, token: \"${env:SM_AV_UNSET_OP}\", role: admin}\n\
        agents:\n  - {name: x, token: \"${env:SM_AV_UNSET_X}\"}\n  - {name: y, token: literal-y}\n\
        credentials:\n  - {name: s, hosts: [h], header: A, value: \"Bearer ${env:SM_AV_KEY}\"}\n";

    fn view(agent: Option<&str>) -> Result<AgentView, ConfigError> {
        AgentView::parse(YAML, None, Path::new("/base"), "t.yaml", agent)
    }

    #[test]
    fn reads_no_secret_and_lists_every_env_reference() {
        let v = view(None).unwrap();
        assert_eq!(v.config.proxy_listen.to_string(), "127.0.0.1:9080");
        assert!(v.config.operators.is_empty() && v.config.agents.is_empty());
        assert_eq!(v.env_refs, ["SM_AV_KEY", "SM_AV_UNSET_OP", "SM_AV_UNSET_X"]);
    }

    #[test]
    fn resolves_only_the_chosen_agents_token() {
        let v = view(Some("y")).unwrap();
        assert_eq!(v.config.agents.len(), 1);
        assert_eq!(v.config.agents[0].token, "literal-y");
        let err = view(Some("x")).unwrap_err().to_string();
        assert!(err.contains("agents[0].token"), "{err}");
        let err = view(Some("z")).unwrap_err().to_string();
        assert!(err.contains("no agent named `z`"), "{err}");
    }
}
