//! Go templates as Fleet evaluates Helm values (`text/template` with `${ }` delimiters, the
//! sprig functions, `missingkey=error`), on the `gtmpl` engine: the template syntax (fields,
//! pipelines, `if`/`else`/`with`/`range`, variables, the Go builtins such as `index`, `eq`,
//! `printf`) is Go's; the sprig functions Fleet's users reach for are here ([`FUNCTIONS`]).
//! A function that is not is an error naming it, never a silently unrendered value.

use std::collections::HashMap;

use base64::Engine as _;
use gtmpl::{Context, Func, FuncError, Template, Value};
use sha2::{Digest as _, Sha256};

/// A values template that does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("helm values template: {0}")]
pub struct TemplateError(pub String);

/// Renders `text` (Fleet's `${ }` delimiters) with `context`.
pub fn render(text: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
    let mut template = Template::default();
    for (name, function) in FUNCTIONS {
        template.add_func(name, *function);
    }
    template
        .parse(go_delimiters(text))
        .map_err(|e| TemplateError(e.to_string()))?;
    let rendered = template
        .render(&Context::from(to_value(context)))
        .map_err(|e| TemplateError(e.to_string()))?;
    // Fleet renders with `missingkey=error`: a key that is not there is an error.
    if rendered.contains("<no value>") {
        return Err(TemplateError(format!(
            "{text:?} refers to a key that is not there (use `get` or `default` for optional ones)"
        )));
    }
    Ok(rendered)
}

/// `text` with Fleet's `${ … }` actions as `{{ … }}`, and literal `{{`/`}}` kept literal.
fn go_delimiters(text: &str) -> String {
    let literal = |out: &mut String, part: &str| {
        out.push_str(
            &part
                .replace("{{", "\u{0}OPEN\u{0}")
                .replace("}}", "{{ \"}}\" }}")
                .replace("\u{0}OPEN\u{0}", "{{ \"{{\" }}"),
        );
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start + 2..].find('}') else {
            break;
        };
        literal(&mut out, &rest[..start]);
        out.push_str("{{");
        out.push_str(&rest[start + 2..start + 2 + end]);
        out.push_str("}}");
        rest = &rest[start + 2 + end + 1..];
    }
    literal(&mut out, rest);
    out
}

fn to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::from(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        serde_json::Value::Object(map) => {
            Value::Map(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

/// The sprig functions available, by name.
pub const FUNCTIONS: &[(&str, Func)] = &[
    ("default", default),
    ("empty", empty),
    ("coalesce", coalesce),
    ("ternary", ternary),
    ("required", required),
    ("get", get),
    ("hasKey", has_key),
    ("dict", dict),
    ("list", list),
    ("keys", keys),
    ("first", first),
    ("last", last),
    ("join", join),
    ("splitList", split_list),
    ("quote", quote),
    ("squote", squote),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("trim", trim),
    ("trimPrefix", trim_prefix),
    ("trimSuffix", trim_suffix),
    ("replace", replace),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("repeat", repeat),
    ("nospace", nospace),
    ("toString", to_string),
    ("toJson", to_json),
    ("int", int),
    ("int64", int),
    ("atoi", int),
    ("float64", float),
    ("add", add),
    ("sub", sub),
    ("mul", mul),
    ("div", div),
    ("mod", modulo),
    ("max", max),
    ("min", min),
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("sha256sum", sha256sum),
];

fn arg(args: &[Value], index: usize, name: &str) -> Result<Value, FuncError> {
    args.get(index)
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs(name.to_owned(), index + 1))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

fn text(args: &[Value], index: usize, name: &str) -> Result<String, FuncError> {
    arg(args, index, name).map(|v| text_of(&v))
}

/// Go's (and sprig's) emptiness: nil, false, 0, "" and empty collections.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(_) => number(value).is_ok_and(|f| f == 0.0),
        Value::Function(_) => false,
    }
}

fn number(value: &Value) -> Result<f64, FuncError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(|i| i as f64)
            .or_else(|| n.as_u64().map(|u| u as f64))
            .or_else(|| n.as_f64())
            .ok_or(FuncError::UnableToConvertFromValue),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| FuncError::Generic(format!("{s:?} is not a number"))),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Nil | Value::NoValue => Ok(0.0),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn whole(value: f64) -> Value {
    Value::from(value.trunc() as i64)
}

fn numbers(args: &[Value], name: &str) -> Result<(f64, f64), FuncError> {
    Ok((number(&arg(args, 0, name)?)?, number(&arg(args, 1, name)?)?))
}

fn map_of(value: &Value) -> Option<&HashMap<String, Value>> {
    match value {
        Value::Map(m) | Value::Object(m) => Some(m),
        _ => None,
    }
}

// `default "x" .Value`: the value unless it is empty.
fn default(args: &[Value]) -> Result<Value, FuncError> {
    let fallback = arg(args, 0, "default")?;
    match args.get(1) {
        Some(value) if !is_empty(value) => Ok(value.clone()),
        _ => Ok(fallback),
    }
}

fn empty(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(args.first().is_none_or(is_empty)))
}

fn coalesce(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args
        .iter()
        .find(|v| !is_empty(v))
        .cloned()
        .unwrap_or(Value::Nil))
}

// `ternary "a" "b" .Condition`.
fn ternary(args: &[Value]) -> Result<Value, FuncError> {
    let condition = !is_empty(&arg(args, 2, "ternary")?);
    arg(args, usize::from(!condition), "ternary")
}

fn required(args: &[Value]) -> Result<Value, FuncError> {
    let value = arg(args, 1, "required")?;
    if is_empty(&value) {
        return Err(FuncError::Generic(text(args, 0, "required")?));
    }
    Ok(value)
}

// `get .Map "key"`: the value, or "" when missing.
fn get(args: &[Value]) -> Result<Value, FuncError> {
    let map = arg(args, 0, "get")?;
    let key = text(args, 1, "get")?;
    Ok(map_of(&map)
        .and_then(|m| m.get(&key).cloned())
        .unwrap_or_else(|| Value::from(String::new())))
}

fn has_key(args: &[Value]) -> Result<Value, FuncError> {
    let map = arg(args, 0, "hasKey")?;
    let key = text(args, 1, "hasKey")?;
    Ok(Value::Bool(
        map_of(&map).is_some_and(|m| m.contains_key(&key)),
    ))
}

fn dict(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.chunks(2)
            .map(|pair| {
                (
                    text_of(&pair[0]),
                    pair.get(1)
                        .cloned()
                        .unwrap_or_else(|| Value::from(String::new())),
                )
            })
            .collect(),
    ))
}

fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut names: Vec<String> = args
        .iter()
        .filter_map(map_of)
        .flat_map(|m| m.keys().cloned())
        .collect();
    names.sort();
    Ok(Value::Array(names.into_iter().map(Value::from).collect()))
}

fn items(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    Ok(items(&arg(args, 0, "first")?)
        .first()
        .cloned()
        .unwrap_or(Value::Nil))
}

fn last(args: &[Value]) -> Result<Value, FuncError> {
    Ok(items(&arg(args, 0, "last")?)
        .last()
        .cloned()
        .unwrap_or(Value::Nil))
}

// `join "," .List`.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    let separator = text(args, 0, "join")?;
    let joined: Vec<String> = items(&arg(args, 1, "join")?).iter().map(text_of).collect();
    Ok(Value::from(joined.join(&separator)))
}

// `splitList "," "a,b"`.
fn split_list(args: &[Value]) -> Result<Value, FuncError> {
    let separator = text(args, 0, "splitList")?;
    let text = text(args, 1, "splitList")?;
    Ok(Value::Array(
        text.split(separator.as_str())
            .map(|s| Value::from(s.to_owned()))
            .collect(),
    ))
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args.iter().map(|a| format!("{:?}", text_of(a))).collect();
    Ok(Value::from(quoted.join(" ")))
}

fn squote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", text_of(a))).collect();
    Ok(Value::from(quoted.join(" ")))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(args, 0, "upper")?.to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(args, 0, "lower")?.to_lowercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let text = text(args, 0, "title")?;
    let titled: Vec<String> = text
        .split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        })
        .collect();
    Ok(Value::from(titled.join(" ")))
}

fn trim(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(args, 0, "trim")?.trim().to_owned()))
}

// `trimPrefix "-" .Text`.
fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let prefix = text(args, 0, "trimPrefix")?;
    let text = text(args, 1, "trimPrefix")?;
    Ok(Value::from(
        text.strip_prefix(prefix.as_str())
            .unwrap_or(&text)
            .to_owned(),
    ))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let suffix = text(args, 0, "trimSuffix")?;
    let text = text(args, 1, "trimSuffix")?;
    Ok(Value::from(
        text.strip_suffix(suffix.as_str())
            .unwrap_or(&text)
            .to_owned(),
    ))
}

// `replace "old" "new" .Text`.
fn replace(args: &[Value]) -> Result<Value, FuncError> {
    let old = text(args, 0, "replace")?;
    let new = text(args, 1, "replace")?;
    Ok(Value::from(text(args, 2, "replace")?.replace(&old, &new)))
}

// `contains "needle" .Text`.
fn contains(args: &[Value]) -> Result<Value, FuncError> {
    let needle = text(args, 0, "contains")?;
    Ok(Value::Bool(text(args, 1, "contains")?.contains(&needle)))
}

fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let prefix = text(args, 0, "hasPrefix")?;
    Ok(Value::Bool(
        text(args, 1, "hasPrefix")?.starts_with(&prefix),
    ))
}

fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let suffix = text(args, 0, "hasSuffix")?;
    Ok(Value::Bool(text(args, 1, "hasSuffix")?.ends_with(&suffix)))
}

// `repeat 3 "x"`.
fn repeat(args: &[Value]) -> Result<Value, FuncError> {
    let count = number(&arg(args, 0, "repeat")?)?.max(0.0) as usize;
    Ok(Value::from(
        text(args, 1, "repeat")?.repeat(count.min(10_000)),
    ))
}

fn nospace(args: &[Value]) -> Result<Value, FuncError> {
    let text = text(args, 0, "nospace")?;
    Ok(Value::from(
        text.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>(),
    ))
}

fn to_string(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text(args, 0, "toString")?))
}

fn to_json(args: &[Value]) -> Result<Value, FuncError> {
    fn json(value: &Value) -> serde_json::Value {
        match value {
            Value::Nil | Value::NoValue | Value::Function(_) => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Number(n) => n
                .as_i64()
                .map(serde_json::Value::from)
                .or_else(|| n.as_f64().map(serde_json::Value::from))
                .unwrap_or(serde_json::Value::Null),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(json).collect()),
            Value::Map(m) | Value::Object(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), json(v))).collect())
            }
        }
    }
    Ok(Value::from(json(&arg(args, 0, "toJson")?).to_string()))
}

fn int(args: &[Value]) -> Result<Value, FuncError> {
    Ok(whole(number(&arg(args, 0, "int")?)?))
}

fn float(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(number(&arg(args, 0, "float64")?)?))
}

fn add(args: &[Value]) -> Result<Value, FuncError> {
    let sum = args.iter().map(number).sum::<Result<f64, _>>()?;
    Ok(whole(sum))
}

fn sub(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = numbers(args, "sub")?;
    Ok(whole(a - b))
}

fn mul(args: &[Value]) -> Result<Value, FuncError> {
    let product = args.iter().map(number).product::<Result<f64, _>>()?;
    Ok(whole(product))
}

fn div(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = numbers(args, "div")?;
    if b == 0.0 {
        return Err(FuncError::Generic("div: division by zero".to_owned()));
    }
    Ok(whole(a / b))
}

fn modulo(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = numbers(args, "mod")?;
    if b == 0.0 {
        return Err(FuncError::Generic("mod: division by zero".to_owned()));
    }
    Ok(whole(a % b))
}

fn max(args: &[Value]) -> Result<Value, FuncError> {
    let values = args.iter().map(number).collect::<Result<Vec<f64>, _>>()?;
    Ok(whole(values.into_iter().fold(f64::MIN, f64::max)))
}

fn min(args: &[Value]) -> Result<Value, FuncError> {
    let values = args.iter().map(number).collect::<Result<Vec<f64>, _>>()?;
    Ok(whole(values.into_iter().fold(f64::MAX, f64::min)))
}

fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    let text = text(args, 0, "b64enc")?;
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(text),
    ))
}

fn b64dec(args: &[Value]) -> Result<Value, FuncError> {
    let text = text(args, 0, "b64dec")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| FuncError::Generic(format!("b64dec: {e}")))?;
    Ok(Value::from(String::from_utf8_lossy(&bytes).into_owned()))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    let digest = Sha256::digest(text(args, 0, "sha256sum")?.as_bytes());
    Ok(Value::from(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> serde_json::Value {
        json!({
            "ClusterName": "prod-1",
            "ClusterNamespace": "fleet-default",
            "ClusterLabels": {"env": "prod", "region": "eu"},
            "ClusterAnnotations": {},
            "ClusterValues": {"replicas": 3, "tier": {"size": "large"}},
        })
    }

    #[test]
    fn fleets_documented_templates_render() {
        // (template, rendered)
        let cases = [
            ("${ .ClusterName }", "prod-1"),
            ("${ get .ClusterLabels \"env\" }", "prod"),
            (
                "${ get .ClusterLabels \"missing\" | default \"dev\" }",
                "dev",
            ),
            ("${ index .ClusterLabels \"region\" }", "eu"),
            ("${ .ClusterValues.tier.size | upper }", "LARGE"),
            (
                "${ if eq .ClusterLabels.env \"prod\" }3${ else }1${ end }",
                "3",
            ),
            ("${ .ClusterValues.replicas | add 1 }", "4"),
            (
                "${ printf \"%s.%s\" .ClusterName .ClusterNamespace }",
                "prod-1.fleet-default",
            ),
            ("${ hasKey .ClusterLabels \"env\" }", "true"),
            (
                "${ ternary \"big\" \"small\" (eq .ClusterValues.replicas 3) }",
                "big",
            ),
            ("${ .ClusterLabels | keys | join \",\" }", "env,region"),
            ("${ .ClusterName | quote }", "\"prod-1\""),
            ("${ trimPrefix \"prod-\" .ClusterName }", "1"),
            ("${ toJson .ClusterValues.tier }", "{\"size\":\"large\"}"),
            ("plain {{ .Values.x }} text", "plain {{ .Values.x }} text"),
        ];
        for (template, want) in cases {
            assert_eq!(
                render(template, &context()).as_deref(),
                Ok(want),
                "{template}"
            );
        }
    }

    #[test]
    fn unknown_functions_and_missing_keys_are_errors() {
        let unknown =
            render("${ .ClusterName | nosuchfunction }", &context()).expect_err("unknown");
        assert!(unknown.to_string().contains("nosuchfunction"), "{unknown}");
        let missing = render("${ .ClusterLabels.missing }", &context()).expect_err("missing");
        assert!(missing.to_string().contains("not there"), "{missing}");
        let parse = render("${ if .ClusterName }", &context()).expect_err("unterminated");
        assert!(!parse.to_string().is_empty());
    }
}
