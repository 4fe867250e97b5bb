//! CEL conditions (SPEC §5.3): compile once at load, evaluate against a per-intent context.
//!
//! Variables: `resource`, `action`, `args` (map), `agent`, `request`
//! (`method`, `host`, `port`, `path`, `query`, `headers`) and `now`
//! (timestamp). JSON numbers become CEL `int` when they are integers that fit
//! an `i64` (else `uint`, else `double`); the `cel` crate compares `int`,
//! `uint` and `double` with each other, so `args.amount > 50` and
//! `args.amount > 50.5` both work whatever the JSON spelling of the amount.
//! Values are built as borrowed `Val` trees (no string copies).

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
    CelUInt,
};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value};
use sudomode_intent::{Intent, NormalizedRequest};

use crate::bounds;
use crate::python::{self, PythonSpelling};

/// A compiled, boolean CEL condition.
pub struct Condition {
    /// As written in the policy file.
    source: String,
    /// The CEL judged, when the source was written with Python spellings.
    cel: Option<String>,
    program: Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// The variables a condition may use.
pub const VARIABLES: &[&str] = &["resource", "action", "args", "agent", "request", "now"];

/// Longest stretch of a condition quoted in an error message.
const QUOTE_MAX: usize = 200;

impl Condition {
    /// Compiles `source` against `env`. Python spellings (`and`, `or`, `not`, `True`,
    /// `False`, `None`) are read as CEL and returned so the caller can warn. Refuses
    /// text too large or deep to judge safely, text that does not parse, unknown
    /// variables, and expressions whose top level is visibly not boolean.
    pub fn compile(env: &Env, source: &str) -> Result<(Condition, Option<PythonSpelling>), String> {
        bounds::check_text(source)?;
        let python = python::from_python(source);
        let text = python.as_ref().map_or(source, |p| p.cel.as_str());
        let shown = || match &python {
            Some(p) => format!(
                "(condition: {}; read as CEL: {})",
                excerpt(source, QUOTE_MAX),
                excerpt(&p.cel, QUOTE_MAX)
            ),
            None => format!("(condition: {})", excerpt(source, QUOTE_MAX)),
        };
        let program = env.compile(text).map_err(|e| {
            let msgs: Vec<String> = e
                .errors
                .iter()
                .map(|pe| format!("{}:{}: {}", pe.pos.0, pe.pos.1, pe.msg))
                .collect();
            format!(
                "condition does not compile: {}{} {}",
                msgs.join("; "),
                not_cel_hint(text),
                shown()
            )
        })?;
        bounds::check_depth(program.expression())?;
        let mut unknown: Vec<String> = Vec::new();
        unknown_idents(program.expression(), &mut Vec::new(), &mut unknown);
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            return Err(format!(
                "condition uses unknown variable(s) {}: the variables are {} {}",
                unknown.join(", "),
                VARIABLES.join(", "),
                shown()
            ));
        }
        if let Some(kind) = non_boolean(&program.expression().expr) {
            return Err(format!(
                "condition is not boolean: it is {kind} {}",
                shown()
            ));
        }
        let cel = python.as_ref().map(|p| p.cel.clone());
        Ok((
            Condition {
                source: source.to_string(),
                cel,
                program,
            },
            python,
        ))
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The CEL that is judged: the source, or its reading when it used Python spellings.
    pub fn cel(&self) -> &str {
        self.cel.as_deref().unwrap_or(&self.source)
    }

    /// Evaluates to a bool; any other result is an error (fail-closed is the
    /// caller's business).
    pub fn eval(&self, ctx: &Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition returned {:?}, not a bool",
                other.type_of()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// At most `max` bytes of `s` (on a character boundary), marked when cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Hints for Python spellings that have no token-level CEL reading.
fn not_cel_hint(text: &str) -> &'static str {
    let toks = crate::cel_text::tokenize(text);
    if toks.iter().any(|t| t.is_word("is")) {
        "; Python's `is None` / `is not None` are written `== null` / `!= null` in CEL"
    } else if toks.iter().any(|t| t.is("=")) {
        "; comparison is `==` in CEL"
    } else {
        ""
    }
}

/// Type names a condition may mention (`type(x) == int`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "map",
    "null_type",
    "type",
];

/// Collects identifiers that are neither variables, type names nor bound by
/// an enclosing comprehension (`exists(x, …)`).
fn unknown_idents(e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@')
                && !VARIABLES.contains(&name.as_str())
                && !TYPE_NAMES.contains(&name.as_str())
                && !bound.iter().any(|b| b == name)
            {
                out.push(name.clone());
            }
        }
        Expr::Comprehension(c) => {
            unknown_idents(&c.iter_range, bound, out);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                unknown_idents(x, bound, out);
            }
            bound.truncate(before);
        }
        other => {
            for child in bounds::children(other) {
                unknown_idents(child, bound, out);
            }
        }
    }
}

/// What a top-level expression visibly is, when it cannot be a bool.
fn non_boolean(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::Literal(LiteralValue::Boolean(_)) => None,
        Expr::Literal(LiteralValue::Int(_)) => Some("an int literal"),
        Expr::Literal(LiteralValue::UInt(_)) => Some("a uint literal"),
        Expr::Literal(LiteralValue::Double(_)) => Some("a double literal"),
        Expr::Literal(LiteralValue::String(_)) => Some("a string literal"),
        Expr::Literal(LiteralValue::Bytes(_)) => Some("a bytes literal"),
        Expr::Literal(LiteralValue::Null) => Some("null"),
        Expr::List(_) => Some("a list"),
        Expr::Map(_) => Some("a map"),
        Expr::Call(call) => match call.func_name.as_str() {
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => Some("arithmetic"),
            "size" | "int" | "uint" | "double" | "string" | "bytes" | "timestamp" | "duration"
            | "getHours" | "getMinutes" | "getDayOfWeek" | "getFullYear" | "getMonth"
            | "getDayOfMonth" | "getDate" | "getDayOfYear" | "getSeconds" | "getMilliseconds" => {
                Some("a non-boolean function result")
            }
            operators::CONDITIONAL if call.args.len() == 3 => {
                non_boolean(&call.args[1].expr).or_else(|| non_boolean(&call.args[2].expr))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Everything a condition sees about one intent, borrowed from the intent and
/// the request; turned into a CEL [`Context`] on first use.
pub struct EvalInput<'a> {
    pub env: &'a Arc<Env>,
    pub agent: &'a str,
    pub intent: &'a Intent,
    pub request: &'a NormalizedRequest,
    pub now: chrono::DateTime<chrono::FixedOffset>,
}

impl<'a> EvalInput<'a> {
    /// Builds the context once per intent.
    pub fn context(&self) -> Context<'a, 'a> {
        let mut ctx = Context::with_env(Arc::clone(self.env));
        ctx.add_variable_as_val(
            "resource",
            Box::new(CelString::from(self.intent.resource.as_str())),
        );
        ctx.add_variable_as_val(
            "action",
            Box::new(CelString::from(self.intent.action.as_str())),
        );
        ctx.add_variable_as_val("args", json_to_val(&self.intent.args));
        ctx.add_variable_as_val("agent", Box::new(CelString::from(self.agent)));
        ctx.add_variable_as_val("request", request_to_val(self.request));
        ctx.add_variable_as_val("now", Box::new(CelTimestamp::from(self.now)));
        ctx
    }
}

fn str_map<'a>(m: &'a std::collections::BTreeMap<String, String>) -> Box<dyn Val + 'a> {
    let map: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = m
        .iter()
        .map(|(k, v)| {
            (
                CelMapKey::from(k.as_str()),
                Box::new(CelString::from(v.as_str())) as Box<dyn Val + 'a>,
            )
        })
        .collect();
    Box::new(CelMap::from(map))
}

fn request_to_val(r: &NormalizedRequest) -> Box<dyn Val + '_> {
    let mut m: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(7);
    m.insert(
        "method".into(),
        Box::new(CelString::from(r.method.as_str())),
    );
    m.insert(
        "scheme".into(),
        Box::new(CelString::from(r.scheme.as_str())),
    );
    m.insert("host".into(), Box::new(CelString::from(r.host.as_str())));
    m.insert("port".into(), Box::new(CelInt::from(i64::from(r.port))));
    m.insert("path".into(), Box::new(CelString::from(r.path.as_str())));
    m.insert("query".into(), str_map(&r.query));
    m.insert("headers".into(), str_map(&r.headers));
    Box::new(CelMap::from(m))
}

/// JSON → CEL, borrowing strings. Integers that fit `i64` are `int`, larger
/// non-negative ones `uint`, the rest `double`.
pub fn json_to_val(v: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match v {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(a) => {
            let items: Vec<Box<dyn Val + '_>> = a.iter().map(json_to_val).collect();
            Box::new(CelList::from(items))
        }
        J::Object(o) => {
            let map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = o
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v)))
                .collect();
            Box::new(CelMap::from(map))
        }
    }
}

/// `time` → the chrono timestamp `cel` uses (UTC offset).
pub fn to_chrono(now: time::OffsetDateTime) -> chrono::DateTime<chrono::FixedOffset> {
    let utc = chrono::FixedOffset::east_opt(0);
    let nanos = now.unix_timestamp_nanos();
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    match (chrono::DateTime::from_timestamp(secs, sub), utc) {
        (Some(dt), Some(off)) => dt.with_timezone(&off),
        // Out of chrono's range (≈ ±262,000 years): the epoch.
        _ => chrono::DateTime::UNIX_EPOCH.fixed_offset(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn env() -> Arc<Env> {
        Arc::new(Env::stdlib())
    }

    fn req() -> NormalizedRequest {
        NormalizedRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: "api.stripe.com".into(),
            port: 443,
            path: "/v1/charges".into(),
            query: BTreeMap::from([("expand".to_string(), "x".to_string())]),
            headers: BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
        }
    }

    fn eval(src: &str, args: serde_json::Value) -> Result<bool, String> {
        let env = env();
        let (c, _) = Condition::compile(&env, src)?;
        let intent = Intent::new("stripe.charges", "create", args);
        let request = req();
        let now = to_chrono(time::macros::datetime!(2026-11-23 21:30:00 UTC));
        let input = EvalInput {
            env: &env,
            agent: "billing-bot",
            intent: &intent,
            request: &request,
            now,
        };
        let ctx = input.context();
        c.eval(&ctx)
    }

    #[test]
    fn int_and_double_compare() {
        assert_eq!(eval("args.amount > 50", json!({"amount": 5000})), Ok(true));
        assert_eq!(eval("args.amount > 50", json!({"amount": 30})), Ok(false));
        assert_eq!(eval("args.amount > 50", json!({"amount": 50.5})), Ok(true));
        assert_eq!(eval("args.amount > 50.5", json!({"amount": 51})), Ok(true));
        assert_eq!(eval("args.amount > 50.5", json!({"amount": 50})), Ok(false));
        assert_eq!(eval("args.amount <= 50", json!({"amount": 50.0})), Ok(true));
        assert_eq!(eval("args.amount == 50", json!({"amount": 50.0})), Ok(true));
        assert_eq!(
            eval("args.amount > 50", json!({"amount": u64::MAX})),
            Ok(true)
        );
        assert_eq!(eval("args.amount < 0", json!({"amount": -3})), Ok(true));
    }

    #[test]
    fn missing_key_and_wrong_type_are_errors() {
        assert!(eval("args.amount > 50", json!({})).is_err());
        assert!(eval("args.amount > 50", json!({"amount": "lots"})).is_err());
        assert!(eval("args.amount", json!({"amount": true})).is_ok());
        // Non-bool result at runtime.
        let e = eval("args.amount", json!({"amount": 5})).unwrap_err();
        assert!(e.contains("not a bool"), "{e}");
    }

    #[test]
    fn standard_functions() {
        let a = json!({"email": "a@example.com", "tags": ["x", "y"], "n": {"k": 1}});
        assert_eq!(
            eval(r#"args.email.matches("^[a-z]+@example\\.com$")"#, a.clone()),
            Ok(true)
        );
        assert_eq!(eval(r#"args.email.startsWith("a@")"#, a.clone()), Ok(true));
        assert_eq!(eval(r#"args.email.endsWith(".com")"#, a.clone()), Ok(true));
        assert_eq!(eval("size(args.tags) == 2", a.clone()), Ok(true));
        assert_eq!(eval("args.tags.size() == 2", a.clone()), Ok(true));
        assert_eq!(eval("has(args.email)", a.clone()), Ok(true));
        assert_eq!(eval("has(args.missing)", a.clone()), Ok(false));
        assert_eq!(
            eval("!has(args.missing) || args.missing > 1", a.clone()),
            Ok(true)
        );
        assert_eq!(eval(r#""x" in args.tags"#, a.clone()), Ok(true));
        assert_eq!(eval(r#""k" in args.n"#, a.clone()), Ok(true));
        assert_eq!(
            eval(r#"agent in ["billing-bot", "ops"]"#, a.clone()),
            Ok(true)
        );
        assert_eq!(eval(r#"now.getHours("UTC") == 21"#, a.clone()), Ok(true));
        assert_eq!(
            eval("now.getHours() >= 9 && now.getHours() < 17", a.clone()),
            Ok(false)
        );
        assert_eq!(
            eval(r#"now > timestamp("2026-01-01T00:00:00Z")"#, a.clone()),
            Ok(true)
        );
        assert_eq!(eval("now.getDayOfWeek() == 1", a.clone()), Ok(true)); // a Monday
        assert_eq!(eval("args.tags.exists(t, t == 'y')", a.clone()), Ok(true));
    }

    #[test]
    fn request_and_intent_variables() {
        let a = json!({});
        assert_eq!(
            eval(
                r#"request.method == "POST" && request.host == "api.stripe.com""#,
                a.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                r#"request.path.startsWith("/v1/") && request.port == 443"#,
                a.clone()
            ),
            Ok(true)
        );
        assert_eq!(eval(r#"request.query.expand == "x""#, a.clone()), Ok(true));
        assert_eq!(
            eval(
                r#"request.headers["content-type"] == "application/json""#,
                a.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                r#"resource == "stripe.charges" && action == "create""#,
                a.clone()
            ),
            Ok(true)
        );
        assert_eq!(eval(r#"agent == "billing-bot""#, a), Ok(true));
    }

    #[test]
    fn python_spellings_are_read_as_cel() {
        let env = env();
        let (c, py) = Condition::compile(&env, "args.amount > 50 and agent == 'x'").unwrap();
        assert_eq!(c.cel(), "args.amount > 50 && agent == 'x'");
        assert_eq!(c.source(), "args.amount > 50 and agent == 'x'");
        assert_eq!(py.unwrap().words, ["and"]);
        // Inside strings or as a field name: CEL as written, no warning.
        let (c, py) = Condition::compile(&env, "args.note == 'this and that'").unwrap();
        assert!(py.is_none());
        assert_eq!(c.cel(), c.source());
        assert!(
            Condition::compile(&env, "args.not == 1 || args.android == 2")
                .unwrap()
                .1
                .is_none()
        );
        // Decides as Python would.
        assert_eq!(eval("not args.a > 10", json!({"a": 5})), Ok(true));
        assert_eq!(eval("not args.a > 10", json!({"a": 50})), Ok(false));
        assert_eq!(eval("args.a == None", json!({"a": null})), Ok(true));
        assert_eq!(
            eval(
                "args.c not in ['usd'] or args.a",
                json!({"c": "eur", "a": false})
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "args.t == 'salt and pepper' and not args.u",
                json!({"t": "salt and pepper", "u": false})
            ),
            Ok(true)
        );
        // Still not CEL: an error that says how CEL spells it.
        let e = Condition::compile(&env, "args.a is None").unwrap_err();
        assert!(e.contains("== null"), "{e}");
        let e = Condition::compile(&env, "args.a = 5").unwrap_err();
        assert!(e.contains("`==`"), "{e}");
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let env = env();
        let chain = |n: usize| format!("{} > 0", vec!["args.amount"; n].join(" + "));
        // 126 terms: `>`, 125 `+`, the select and `args` = 128 levels.
        assert!(Condition::compile(&env, &chain(126)).is_ok());
        let e = Condition::compile(&env, &chain(127)).unwrap_err();
        assert!(e.contains("too deeply") && e.contains("129"), "{e}");
        let ones = format!("{} > 0", vec!["1"; 1500].join(" + "));
        let e = Condition::compile(&env, &ones).unwrap_err();
        assert!(e.contains("too deeply"), "{e}");
        let e = Condition::compile(&env, &"x".repeat(20_000)).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        // The largest accepted chain evaluates on a small stack.
        let handle = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || eval(&chain(126), json!({"amount": 1})))
            .unwrap();
        assert_eq!(handle.join().unwrap(), Ok(true));
        // Balanced `&&` chains are wide, not deep.
        let wide = vec!["args.amount > 0"; 500].join(" && ");
        assert!(Condition::compile(&env, &wide).is_ok());
    }

    #[test]
    fn compile_errors() {
        let env = env();
        assert!(
            Condition::compile(&env, "args.amount >")
                .unwrap_err()
                .contains("does not compile")
        );
        assert!(
            Condition::compile(&env, "args.amount + 1")
                .unwrap_err()
                .contains("not boolean")
        );
        assert!(
            Condition::compile(&env, "'yes'")
                .unwrap_err()
                .contains("not boolean")
        );
        assert!(
            Condition::compile(&env, "42")
                .unwrap_err()
                .contains("not boolean")
        );
        assert!(
            Condition::compile(&env, "size(args)")
                .unwrap_err()
                .contains("not boolean")
        );
        assert!(
            Condition::compile(&env, "amount > 5")
                .unwrap_err()
                .contains("unknown variable")
        );
        assert!(Condition::compile(&env, "args.refund == True").is_ok());
        assert!(Condition::compile(&env, "true").is_ok());
        assert!(Condition::compile(&env, "[1,2].exists(x, x > 1)").is_ok());
    }

    #[test]
    fn chrono_conversion() {
        let t = to_chrono(time::macros::datetime!(2026-11-23 21:30:00.5 UTC));
        assert_eq!(t.to_rfc3339(), "2026-11-23T21:30:00.500+00:00");
    }
}
