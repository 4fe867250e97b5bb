//! What the built-in mappers can produce (SPEC §4.2–4.9): the resource families and,
//! where they are closed, their actions — the one list `policy check` compares rule
//! names against, kept next to the mappers that produce them.

use crate::{sql, stripe};

/// A family of resources one built-in mapper produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `stripe.<collection>…`
    Stripe,
    /// `aws.<signing name>`
    Aws,
    /// `sql`
    Sql,
    /// `db`, `db.<table>`, `db.rpc.<fn>` (PostgREST)
    PostgRest,
    /// `llm.openai`, `llm.anthropic`
    Llm,
    /// `http.<host>`
    Http,
    /// `mcp.<server>`, `mcp.<server>.tools`
    Mcp,
}

/// Every family, in the order suggestions are drawn from.
pub const FAMILIES: &[Family] = &[
    Family::Stripe,
    Family::Aws,
    Family::Sql,
    Family::PostgRest,
    Family::Llm,
    Family::Http,
    Family::Mcp,
];

/// Stripe collections and singletons that start a resource name (`stripe.<this>…`).
const STRIPE_COLLECTIONS: &[&str] = &[
    "account_links",
    "account_sessions",
    "accounts",
    "apple_pay",
    "application_fees",
    "balance_transactions",
    "charges",
    "confirmation_tokens",
    "country_specs",
    "coupons",
    "credit_notes",
    "customer_sessions",
    "customers",
    "disputes",
    "ephemeral_keys",
    "events",
    "exchange_rates",
    "file_links",
    "files",
    "invoice_payments",
    "invoice_rendering_templates",
    "invoiceitems",
    "invoices",
    "mandates",
    "payment_attempt_records",
    "payment_intents",
    "payment_links",
    "payment_method_configurations",
    "payment_method_domains",
    "payment_methods",
    "payment_records",
    "payouts",
    "plans",
    "prices",
    "products",
    "promotion_codes",
    "quotes",
    "refunds",
    "reviews",
    "setup_attempts",
    "setup_intents",
    "shipping_rates",
    "sources",
    "subscription_items",
    "subscription_schedules",
    "subscriptions",
    "tax_codes",
    "tax_ids",
    "tax_rates",
    "tokens",
    "topups",
    "transfers",
    "webhook_endpoints",
];

/// AWS services suggested for near misses (any lower-case signing name is produced).
const AWS_SERVICES: &[&str] = &[
    "acm",
    "apigateway",
    "athena",
    "autoscaling",
    "bedrock",
    "cloudformation",
    "cloudfront",
    "cloudwatch",
    "cognito-idp",
    "dynamodb",
    "ec2",
    "ecr",
    "ecs",
    "eks",
    "elasticloadbalancing",
    "events",
    "firehose",
    "glue",
    "iam",
    "kinesis",
    "kms",
    "lambda",
    "logs",
    "monitoring",
    "organizations",
    "rds",
    "route53",
    "s3",
    "sagemaker",
    "secretsmanager",
    "ses",
    "sns",
    "sqs",
    "ssm",
    "states",
    "sts",
];

const LLM_PROVIDERS: &[&str] = &["llm.openai", "llm.anthropic"];

/// First path segments of the LLM providers' APIs (`chat.completions`, `files.…`).
const LLM_ENDPOINTS: &[&str] = &[
    "assistants",
    "audio",
    "batches",
    "chat",
    "completions",
    "complete",
    "containers",
    "conversations",
    "embeddings",
    "evals",
    "files",
    "fine_tuning",
    "images",
    "messages",
    "models",
    "moderations",
    "organization",
    "organizations",
    "realtime",
    "responses",
    "threads",
    "uploads",
    "vector_stores",
];

/// HTTP methods as generic, Stripe and PostgREST actions spell them.
const METHODS: &[&str] = &[
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

const STRIPE_ACTIONS: &[&str] = &["create", "retrieve", "update", "list", "delete"];
const POSTGREST_ACTIONS: &[&str] = &["select", "insert", "update", "upsert", "delete", "call"];
const SQL_EXTRA: &[&str] = &["upsert", "other", "unparsed"];

impl Family {
    /// The family `resource` belongs to, by its leading name.
    pub fn of(resource: &str) -> Option<Family> {
        let first = resource.split('.').next().unwrap_or("");
        match first {
            "stripe" => Some(Family::Stripe),
            "aws" => Some(Family::Aws),
            "sql" => Some(Family::Sql),
            "db" => Some(Family::PostgRest),
            "llm" => Some(Family::Llm),
            "http" => Some(Family::Http),
            "mcp" => Some(Family::Mcp),
            _ => None,
        }
    }

    /// The leading name of the family's resources.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Stripe => "stripe",
            Family::Aws => "aws",
            Family::Sql => "sql",
            Family::PostgRest => "db",
            Family::Llm => "llm",
            Family::Http => "http",
            Family::Mcp => "mcp",
        }
    }

    /// Whether the family's mapper can produce `resource` (of this family).
    pub fn produces_resource(self, resource: &str) -> bool {
        let rest = resource.strip_prefix(self.prefix()).and_then(|r| {
            if r.is_empty() {
                Some("")
            } else {
                r.strip_prefix('.')
            }
        });
        let Some(rest) = rest else {
            return false;
        };
        let lower_label = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        };
        match self {
            Family::Stripe => {
                let mut segs = rest.split('.');
                let first = segs.next().unwrap_or("");
                let second = segs.next().unwrap_or("");
                rest.is_empty()
                    || STRIPE_COLLECTIONS.contains(&first)
                    || stripe::SINGLETONS.contains(&first)
                    || (stripe::NAMESPACES.contains(&first)
                        && (second.is_empty() || lower_label(second)))
            }
            Family::Aws => lower_label(rest),
            Family::Sql => rest.is_empty(),
            Family::PostgRest => rest.is_empty() || !rest.contains(char::is_whitespace),
            Family::Llm => LLM_PROVIDERS.contains(&resource),
            Family::Http => lower_label(rest),
            Family::Mcp => !rest.is_empty(),
        }
    }

    /// Whether the family's mapper can produce `action`. Families whose actions are
    /// open (MCP tool names, generic HTTP extension methods) accept any spelling the
    /// mapper could emit.
    pub fn produces_action(self, action: &str) -> bool {
        match self {
            Family::Stripe => {
                STRIPE_ACTIONS.contains(&action)
                    || stripe::VERBS.contains(&action)
                    || METHODS.contains(&action)
            }
            Family::Aws => {
                action == "unknown"
                    || (action.starts_with(|c: char| c.is_ascii_uppercase())
                        && action.bytes().all(|b| b.is_ascii_alphanumeric()))
            }
            Family::Sql => sql::KNOWN_VERBS.contains(&action) || SQL_EXTRA.contains(&action),
            Family::PostgRest => POSTGREST_ACTIONS.contains(&action) || METHODS.contains(&action),
            Family::Llm => {
                let first = action.split('.').next().unwrap_or("");
                LLM_ENDPOINTS.contains(&first) || METHODS.contains(&action)
            }
            Family::Http => !action.is_empty() && !action.bytes().any(|b| b.is_ascii_uppercase()),
            Family::Mcp => !action.is_empty(),
        }
    }

    /// Whether [`Family::produces_action`] names a closed list (so an action outside it
    /// is certainly never produced).
    pub fn closed_actions(self) -> bool {
        matches!(
            self,
            Family::Stripe | Family::Aws | Family::Sql | Family::PostgRest | Family::Llm
        )
    }

    /// Resource names to suggest for near misses.
    pub fn resources(self) -> Vec<String> {
        match self {
            Family::Stripe => STRIPE_COLLECTIONS
                .iter()
                .chain(stripe::SINGLETONS)
                .map(|c| format!("stripe.{c}"))
                .collect(),
            Family::Aws => AWS_SERVICES.iter().map(|s| format!("aws.{s}")).collect(),
            Family::Sql => vec!["sql".into()],
            Family::PostgRest => vec!["db".into()],
            Family::Llm => LLM_PROVIDERS.iter().map(|s| s.to_string()).collect(),
            Family::Http | Family::Mcp => Vec::new(),
        }
    }

    /// Action names to suggest for near misses.
    pub fn actions(self) -> Vec<&'static str> {
        let list: Vec<&'static str> = match self {
            Family::Stripe => STRIPE_ACTIONS
                .iter()
                .chain(stripe::VERBS)
                .copied()
                .collect(),
            Family::Sql => sql::KNOWN_VERBS.iter().chain(SQL_EXTRA).copied().collect(),
            Family::PostgRest => POSTGREST_ACTIONS.to_vec(),
            Family::Llm => LLM_ENDPOINTS.to_vec(),
            Family::Http => METHODS.to_vec(),
            Family::Aws | Family::Mcp => Vec::new(),
        };
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_resources() {
        assert_eq!(Family::of("stripe.customers"), Some(Family::Stripe));
        assert_eq!(Family::of("database"), None);
        assert!(Family::Stripe.produces_resource("stripe.customers"));
        assert!(Family::Stripe.produces_resource("stripe.customers.sources"));
        assert!(Family::Stripe.produces_resource("stripe.checkout.sessions"));
        assert!(Family::Stripe.produces_resource("stripe.balance"));
        assert!(!Family::Stripe.produces_resource("stripe.customer"));
        assert!(Family::Aws.produces_resource("aws.dynamodb"));
        assert!(!Family::Aws.produces_resource("aws.DynamoDB"));
        assert!(Family::Sql.produces_resource("sql"));
        assert!(!Family::Sql.produces_resource("sql.users"));
        assert!(Family::PostgRest.produces_resource("db.rpc.reset"));
        assert!(Family::Llm.produces_resource("llm.openai"));
        assert!(!Family::Llm.produces_resource("llm.opneai"));
        assert!(Family::Http.produces_resource("http.api.example.com"));
        assert!(!Family::Http.produces_resource("http.API.example.com"));
        assert!(Family::Mcp.produces_resource("mcp.github.tools"));
    }

    #[test]
    fn actions() {
        assert!(Family::Stripe.produces_action("create"));
        assert!(Family::Stripe.produces_action("capture"));
        assert!(!Family::Stripe.produces_action("creat"));
        assert!(Family::Aws.produces_action("DeleteTable"));
        assert!(!Family::Aws.produces_action("deleteTable"));
        assert!(Family::Sql.produces_action("drop"));
        assert!(Family::Sql.produces_action("unparsed"));
        assert!(!Family::Sql.produces_action("remove"));
        assert!(Family::Llm.produces_action("chat.completions"));
        assert!(Family::Http.produces_action("propfind"));
        assert!(!Family::Http.produces_action("GET"));
        assert!(Family::Stripe.actions().contains(&"create"));
    }
}
