//! How large and how deep a condition may be (SPEC §5.4): checked before the CEL parser
//! runs (its tree recursion follows chains such as `a + a + …`) and on the parsed
//! expression (evaluation recurses once per level), so a condition that passes
//! validation can always be judged on a worker thread's stack.

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};

use crate::cel_text::{Kind, Token, tokenize};

/// Longest condition text accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 16 * 1024;
/// Deepest parsed expression accepted (levels from the root to the deepest leaf).
pub const MAX_CONDITION_DEPTH: usize = 128;
/// Bracket nesting accepted before parsing (the CEL parser's own limit is 96).
const MAX_BRACKETS: usize = 96;
/// Upper bound on the nesting the parser may build, estimated from the tokens; well
/// under what the parser needs to overflow a 2 MiB stack, and refused before it runs.
const MAX_ESTIMATE: usize = 1024;

/// Operators that nest the tree when chained (`a + b + c`, `a.b.c`, `a ? b : c ? …`).
const NESTING: &[&str] = &[
    "+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "!", "?", ".",
];

/// Refuses text the parser should not see: too long, too many brackets, or chains long
/// enough to recurse deeply. Errors say what and where the limit is.
pub(crate) fn check_text(src: &str) -> Result<(), String> {
    if src.len() > MAX_CONDITION_BYTES {
        return Err(format!(
            "condition is too large to judge safely: {} bytes (at most {MAX_CONDITION_BYTES})",
            src.len()
        ));
    }
    let toks = tokenize(src);
    let (brackets, estimate) = nesting(&toks);
    if brackets > MAX_BRACKETS {
        return Err(format!(
            "condition nests too deeply to judge safely: {brackets} levels of brackets (at most {MAX_BRACKETS})"
        ));
    }
    if estimate > MAX_ESTIMATE {
        return Err(too_deep(estimate));
    }
    Ok(())
}

fn too_deep(depth: usize) -> String {
    format!(
        "condition nests too deeply to judge safely: about {depth} levels (at most {MAX_CONDITION_DEPTH}); split it into several rules or use `in [...]` instead of long chains"
    )
}

/// (deepest bracket nesting, estimated tree depth). Chained operators count one level
/// each; `&&`, `||` (which CEL balances) and `,` start a new chain.
fn nesting(toks: &[Token<'_>]) -> (usize, usize) {
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let (mut base, mut cur, mut max, mut deepest) = (0usize, 0usize, 0usize, 0usize);
    for t in toks {
        if t.kind == Kind::Punct {
            match t.text {
                "(" | "[" | "{" => {
                    stack.push((base, cur));
                    base += cur + 1;
                    cur = 0;
                    deepest = deepest.max(stack.len());
                }
                ")" | "]" | "}" => {
                    if let Some((b, c)) = stack.pop() {
                        (base, cur) = (b, c);
                    }
                }
                "&&" | "||" | "," => cur = 0,
                op if NESTING.contains(&op) => cur += 1,
                _ => {}
            }
        } else if t.kind == Kind::Ident && matches!(t.text, "and" | "or") {
            cur = 0;
        } else if t.kind == Kind::Ident && matches!(t.text, "in" | "not") {
            cur += 1;
        }
        max = max.max(base + cur);
    }
    (deepest, max)
}

/// Refuses a parsed expression deeper than [`MAX_CONDITION_DEPTH`]. Walks with an
/// explicit stack: this check must not recurse itself.
pub(crate) fn check_depth(root: &IdedExpr) -> Result<(), String> {
    let mut stack: Vec<(&IdedExpr, usize)> = vec![(root, 1)];
    let mut max = 0;
    while let Some((e, depth)) = stack.pop() {
        max = max.max(depth);
        if max > MAX_CONDITION_DEPTH {
            return Err(too_deep(max));
        }
        for child in children(&e.expr) {
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

/// The direct sub-expressions of `e`.
pub(crate) fn children(e: &Expr) -> Vec<&IdedExpr> {
    match e {
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Select(sel) => vec![&*sel.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entries(entries: &[IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::StructField(f) => vec![&f.value],
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(src: &str) -> (usize, usize) {
        nesting(&tokenize(src))
    }

    #[test]
    fn estimates_follow_chains_not_conjunctions() {
        assert_eq!(est("a + b + c > 1").1, 3);
        assert_eq!(est("a.b.c").1, 2);
        assert_eq!(est("x > 1 && y > 1 && z > 1").1, 1);
        assert_eq!(est("f(a + b, c + d)").1, 2);
        assert_eq!(est("((a))").0, 2);
        assert_eq!(est("'a + b + c + d'").1, 0);
    }

    #[test]
    fn text_limits() {
        let long = format!("{} > 0", vec!["args.a"; 1500].join(" + "));
        assert!(check_text(&long).unwrap_err().contains("too deeply"));
        let wide = vec!["args.a > 0"; 1500].join(" && ");
        assert!(check_text(&wide).unwrap_err().contains("too large"));
        let brackets = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(check_text(&brackets).unwrap_err().contains("brackets"));
        assert!(check_text("args.a > 0 && args.b in ['x', 'y']").is_ok());
    }
}
