//! Stripe amounts (minor units) as money, with Stripe's zero- and
//! three-decimal currencies.

const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Format a Stripe amount (minor units) as money: `2500`, `usd` → `25.00 USD`.
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let cur = currency.to_ascii_uppercase();
    let decimals: u32 = if ZERO_DECIMAL.contains(&cur.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&cur.as_str()) {
        3
    } else {
        2
    };
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = u128::from(amount_minor.unsigned_abs());
    let scale = 10u128.pow(decimals);
    let whole = group_thousands(abs / scale);
    let cur = if cur.is_empty() {
        String::new()
    } else {
        format!(" {cur}")
    };
    if decimals == 0 {
        format!("{sign}{whole}{cur}")
    } else {
        let frac = abs % scale;
        format!(
            "{sign}{whole}.{frac:0width$}{cur}",
            width = decimals as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money() {
        assert_eq!(format_money(2500, "usd"), "25.00 USD");
        assert_eq!(format_money(5, "eur"), "0.05 EUR");
        assert_eq!(format_money(-123456789, "gbp"), "-1,234,567.89 GBP");
        assert_eq!(format_money(5000, "jpy"), "5,000 JPY");
        assert_eq!(format_money(1230, "kwd"), "1.230 KWD");
        assert_eq!(
            format_money(i64::MIN, "usd"),
            "-92,233,720,368,547,758.08 USD"
        );
    }
}
