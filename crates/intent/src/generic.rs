//! Generic HTTP mapping (SPEC §4.6): `http.<host>` / lower-case method.

use serde_json::{Map, Value};

use crate::{Ctx, Intent, IntentError, merge_strict, object};

/// Arguments for a REST-ish call: the body, or the query for methods that
/// carry none (a DELETE that does carry a body gets both).
pub(crate) fn rest_args(ctx: &Ctx<'_>) -> Result<Map<String, Value>, IntentError> {
    let bodyless = matches!(ctx.method(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if bodyless {
        let mut args = object(ctx.query_args()?);
        if !ctx.body.is_empty() {
            merge_strict(&mut args, ctx.body.args()?)?;
        }
        Ok(args)
    } else {
        Ok(object(ctx.body.args()?))
    }
}

pub(crate) fn map(ctx: &Ctx<'_>) -> Result<Intent, IntentError> {
    Ok(Intent::new(
        format!("http.{}", ctx.req.host),
        ctx.method().to_ascii_lowercase(),
        Value::Object(rest_args(ctx)?),
    ))
}
