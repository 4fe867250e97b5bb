//! Custom intent mappings (SPEC §4.7): validation at start-up, host globs,
//! path templates with `{name}` captures and `*`, and their four kinds.

use serde_json::Value;

use crate::glob::Glob;
use crate::normalize::decoded_segments;
use crate::sql::{Flavor, SqlText, many};
use crate::{Ctx, CustomIntent, Intent, IntentError, generic, mcp, postgrest};

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Literal(String),
    Capture(String),
    /// One segment in the middle; the rest of the path at the end.
    Star,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Fixed { resource: String, action: String },
    Sql { pointer: String },
    Postgrest,
    Mcp { server: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    host: Glob,
    method: Option<String>,
    path: Option<Vec<Seg>>,
    kind: Kind,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

fn parse_template(t: &str) -> Result<Vec<Seg>, String> {
    let Some(rest) = t.strip_prefix('/') else {
        return Err(format!("path {t:?} must start with '/'"));
    };
    let mut segs = Vec::new();
    for (i, s) in rest.split('/').enumerate() {
        if s.is_empty() {
            if i == 0 && rest.is_empty() {
                break;
            }
            return Err(format!("path {t:?} has an empty segment"));
        }
        let seg = if s == "*" {
            Seg::Star
        } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!("bad capture {s:?} in path {t:?}"));
            }
            if segs.iter().any(|x| *x == Seg::Capture(name.to_string())) {
                return Err(format!("capture {{{name}}} appears twice in path {t:?}"));
            }
            Seg::Capture(name.to_string())
        } else if s.contains(['{', '}', '*']) {
            return Err(format!(
                "segment {s:?} in path {t:?} mixes text with a capture or '*'"
            ));
        } else {
            Seg::Literal(s.to_string())
        };
        segs.push(seg);
    }
    Ok(segs)
}

impl Compiled {
    pub(crate) fn new(index: usize, c: CustomIntent) -> Result<Self, IntentError> {
        let err = |message: String| IntentError::InvalidCustom { index, message };
        let host = c.matcher.host.trim().to_ascii_lowercase();
        if host.is_empty() {
            return Err(err("match.host is empty".into()));
        }
        let Ok(host) = Glob::new(&host, true) else {
            return Err(err("match.host is not a host glob".into()));
        };
        let method = match c.matcher.method {
            Some(m) => {
                let m = m.trim().to_ascii_uppercase();
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(err(format!("bad match.method {m:?}")));
                }
                Some(m)
            }
            None => None,
        };
        let path = c
            .matcher
            .path
            .as_deref()
            .map(parse_template)
            .transpose()
            .map_err(err)?;
        let kind = match (c.sql, c.postgrest, c.resource, c.action, c.mcp) {
            (None, false, None, None, Some(server)) => {
                if !valid_name(&server) {
                    return Err(err("`mcp` must be a non-empty name without spaces".into()));
                }
                Kind::Mcp { server }
            }
            (.., Some(_)) => {
                return Err(err(
                    "`mcp` cannot be combined with `sql`, `postgrest`, `resource` or `action`"
                        .into(),
                ));
            }
            (Some(_), true, ..) => {
                return Err(err("`sql` and `postgrest` cannot both be set".into()));
            }
            (Some(_), false, Some(_), ..) | (Some(_), false, _, Some(_), _) => {
                return Err(err(
                    "`resource`/`action` cannot be combined with `sql` (resource is `sql`)".into(),
                ));
            }
            (None, true, Some(_), ..) | (None, true, _, Some(_), _) => {
                return Err(err(
                    "`resource`/`action` cannot be combined with `postgrest`".into(),
                ));
            }
            (Some(p), false, None, None, _) => {
                if !p.starts_with('/') {
                    return Err(err(format!(
                        "sql {p:?} must be a JSON pointer starting with '/'"
                    )));
                }
                Kind::Sql { pointer: p }
            }
            (None, true, None, None, _) => Kind::Postgrest,
            (None, false, Some(r), Some(a), _) => {
                if !valid_name(&r) || !valid_name(&a) {
                    return Err(err(
                        "`resource` and `action` must be non-empty without spaces".into(),
                    ));
                }
                Kind::Fixed {
                    resource: r,
                    action: a,
                }
            }
            (None, false, None, ..) => return Err(err("`resource` is required".into())),
            (None, false, Some(_), None, _) => return Err(err("`action` is required".into())),
        };
        Ok(Self {
            host,
            method,
            path,
            kind,
        })
    }

    fn captures(&self, ctx: &Ctx<'_>) -> Option<Vec<(String, String)>> {
        if !self.host.is_match(&ctx.req.host) {
            return None;
        }
        if self.method.as_ref().is_some_and(|m| *m != ctx.req.method) {
            return None;
        }
        let Some(template) = &self.path else {
            return Some(Vec::new());
        };
        let segs = decoded_segments(&ctx.req.path);
        let mut caps = Vec::new();
        for (i, t) in template.iter().enumerate() {
            let last = i + 1 == template.len();
            match (t, segs.get(i)) {
                (Seg::Star, _) if last => return Some(caps),
                (Seg::Star, Some(_)) => {}
                (Seg::Literal(l), Some(s)) if l == s => {}
                (Seg::Capture(n), Some(s)) => caps.push((n.clone(), s.clone())),
                _ => return None,
            }
        }
        (segs.len() == template.len()).then_some(caps)
    }

    /// `None` when this mapping does not match the request.
    pub(crate) fn try_map(&self, ctx: &Ctx<'_>) -> Result<Option<Vec<Intent>>, IntentError> {
        let Some(caps) = self.captures(ctx) else {
            return Ok(None);
        };
        let intents = match &self.kind {
            Kind::Fixed { resource, action } => {
                let mut args = generic::rest_args(ctx)?;
                // The path is what the upstream acts on, whatever the body says.
                for (k, v) in caps {
                    args.insert(k, Value::String(v));
                }
                vec![Intent::new(
                    resource.clone(),
                    action.clone(),
                    Value::Object(args),
                )]
            }
            Kind::Sql { pointer } => {
                let body = ctx.body.json()?;
                let no_params = || Value::Array(Vec::new());
                let texts: Vec<SqlText> = match body.pointer(pointer) {
                    Some(Value::String(s)) => vec![SqlText::new(s, no_params())],
                    Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| SqlText::new(s, no_params()))
                        .collect(),
                    _ => {
                        return Err(IntentError::BadRequest(format!(
                            "no SQL text at {pointer} in the body"
                        )));
                    }
                };
                many(&texts, &ctx.req.host, Flavor::Any)?
            }
            Kind::Postgrest => vec![postgrest::map(ctx)?],
            Kind::Mcp { server } => mcp::declared(ctx, server)?,
        };
        Ok(Some(intents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{map_with, req};
    use crate::{CustomMatch, Mapper};
    use serde_json::json;

    fn ci(host: &str, method: Option<&str>, path: Option<&str>) -> CustomIntent {
        CustomIntent {
            matcher: CustomMatch {
                host: host.into(),
                method: method.map(Into::into),
                path: path.map(Into::into),
            },
            resource: None,
            action: None,
            sql: None,
            postgrest: false,
            mcp: None,
        }
    }

    fn fixed(
        host: &str,
        method: Option<&str>,
        path: Option<&str>,
        r: &str,
        a: &str,
    ) -> CustomIntent {
        CustomIntent {
            resource: Some(r.into()),
            action: Some(a.into()),
            ..ci(host, method, path)
        }
    }

    #[test]
    fn globs() {
        let glob = |p: &str, t: &str| Glob::new(p, true).unwrap().is_match(t);
        assert!(glob("*.example.com", "a.b.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(glob("api.github.com", "api.github.com"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
    }

    #[test]
    fn validation() {
        let bad = |c: CustomIntent| {
            matches!(
                Mapper::new(vec![fixed("h", None, None, "r", "a"), c], 10),
                Err(IntentError::InvalidCustom { index: 1, .. })
            )
        };
        assert!(bad(ci("h", None, None)));
        assert!(bad(CustomIntent {
            resource: Some("r".into()),
            ..ci("h", None, None)
        }));
        assert!(bad(CustomIntent {
            sql: Some("statement".into()),
            ..ci("h", None, None)
        }));
        assert!(bad(CustomIntent {
            sql: Some("/s".into()),
            postgrest: true,
            ..ci("h", None, None)
        }));
        assert!(bad(fixed("", None, None, "r", "a")));
        assert!(bad(fixed("h", None, Some("repos/{owner}"), "r", "a")));
        assert!(bad(fixed(
            "h",
            None,
            Some("/repos/{owner}/{owner}"),
            "r",
            "a"
        )));
        assert!(bad(fixed("h", None, Some("/repos/{}"), "r", "a")));
        assert!(bad(fixed("h", None, Some("/repos/x{owner}"), "r", "a")));
        assert!(bad(fixed("h", Some("DEL ETE"), None, "r", "a")));
        assert!(
            Mapper::new(
                vec![CustomIntent {
                    sql: Some("/s".into()),
                    ..ci("h", None, None)
                }],
                10
            )
            .is_ok()
        );
    }

    #[test]
    fn templates_capture() {
        let m = Mapper::new(
            vec![
                fixed(
                    "api.github.com",
                    Some("delete"),
                    Some("/repos/{owner}/{repo}"),
                    "github.repos",
                    "delete",
                ),
                fixed("*.example.com", None, Some("/files/*"), "files", "any"),
                CustomIntent {
                    sql: Some("/statement".into()),
                    ..ci("sql.internal.example", Some("POST"), Some("/query"))
                },
                CustomIntent {
                    postgrest: true,
                    ..ci("db.internal.example", None, Some("/rest/v1/*"))
                },
            ],
            1 << 20,
        )
        .unwrap();
        let one = |r| map_with(&m, &r).unwrap().intents;
        let i = one(req(
            "DELETE",
            "API.github.com.",
            "/repos/acme/%61pp?x=1",
            &[],
            b"",
        ));
        assert_eq!(
            (i[0].resource.as_str(), i[0].action.as_str()),
            ("github.repos", "delete")
        );
        assert_eq!(i[0].args, json!({"x":1,"owner":"acme","repo":"app"}));
        // Method and shape must match; otherwise the built-ins/generic apply.
        assert_eq!(
            one(req("GET", "api.github.com", "/repos/acme/app", &[], b""))[0].resource,
            "http.api.github.com"
        );
        assert_eq!(
            one(req(
                "DELETE",
                "api.github.com",
                "/repos/acme/app/x",
                &[],
                b""
            ))[0]
                .resource,
            "http.api.github.com"
        );
        // An override is read both ways: as the POST sent and as the DELETE.
        let both = one(req(
            "POST",
            "api.github.com",
            "/repos/acme/app?_method=DELETE",
            &[],
            b"",
        ));
        let readings: Vec<_> = both
            .iter()
            .map(|i| (i.resource.as_str(), i.method.as_deref()))
            .collect();
        assert_eq!(
            readings,
            [
                ("http.api.github.com", None),
                ("github.repos", Some("DELETE"))
            ]
        );
        assert_eq!(
            one(req("PUT", "a.example.com", "/files/x/y/z", &[], b"a=1"))[0].resource,
            "files"
        );
        assert_eq!(
            one(req("PUT", "a.example.com", "/files", &[], b""))[0].resource,
            "files"
        );
        let i = one(req(
            "POST",
            "sql.internal.example",
            "/query",
            &[],
            br#"{"statement":"SELECT 1; DELETE FROM t"}"#,
        ));
        assert_eq!(
            i.iter().map(|i| i.action.as_str()).collect::<Vec<_>>(),
            ["select", "delete"]
        );
        assert!(
            map_with(
                &m,
                &req(
                    "POST",
                    "sql.internal.example",
                    "/query",
                    &[],
                    br#"{"other":1}"#
                )
            )
            .is_err()
        );
        let i = one(req(
            "DELETE",
            "db.internal.example",
            "/rest/v1/users?id=eq.1",
            &[],
            b"",
        ));
        assert_eq!(
            (i[0].resource.as_str(), i[0].action.as_str()),
            ("db.users", "delete")
        );
    }
}
