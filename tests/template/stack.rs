//! The template as CloudFormation evaluates it for one set of parameter values: `!Ref`, `!Sub`,
//! `!GetAtt`, `!If` and the conditions, resolved to plain JSON. The one evaluator of the
//! template's intrinsics; tests/athena_sql.rs hands what it resolves to the DuckDB run.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_norway::Value;

use super::{at, tagged};

/// Pseudo parameters as a stack in a test account has them.
const PSEUDO_PARAMETERS: [(&str, &str); 4] = [
    ("AWS::AccountId", "123456789012"),
    ("AWS::Region", "us-east-1"),
    ("AWS::Partition", "aws"),
    ("AWS::StackName", "log-etl"),
];

/// A deployed stack of the template: each parameter is its default unless given.
pub(crate) struct Stack<'t> {
    template: &'t Value,
    values: BTreeMap<String, String>,
}

impl<'t> Stack<'t> {
    /// The stack with the parameters' defaults, and `overrides` (each must be a parameter).
    pub(crate) fn new(template: &'t Value, overrides: &[(&str, &str)]) -> Self {
        let parameters = at(template, &["Parameters"])
            .as_mapping()
            .expect("Parameters is a mapping");
        let mut values: BTreeMap<String, String> = PSEUDO_PARAMETERS
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        for (name, spec) in parameters {
            let name = name.as_str().expect("parameter names are text");
            if let Some(default) = spec.get("Default") {
                values.insert(name.to_owned(), scalar_text(default));
            }
        }
        for (name, value) in overrides {
            assert!(
                parameters.contains_key(*name),
                "no parameter {name} in the template"
            );
            values.insert((*name).to_owned(), (*value).to_owned());
        }
        Self { template, values }
    }

    /// Whether the condition `name` holds.
    pub(crate) fn condition(&self, name: &str) -> bool {
        let definition = at(self.template, &["Conditions", name]);
        self.truth(definition)
    }

    /// `value` with its intrinsics evaluated; `None` for `AWS::NoValue` (a key or list item
    /// holding it is left out). A resource's `!Ref` is `<Id>`, and `!GetAtt Id.Attribute` is
    /// `<Id.Attribute>`, except a bucket's `Arn`, which is the ARN of `<Id>`.
    pub(crate) fn eval(&self, value: &Value) -> Option<Json> {
        if let Some((tag, operand)) = tagged(value) {
            if ["Equals", "Not", "And", "Or", "Condition"].contains(&tag.as_str()) {
                return Some(Json::Bool(self.truth(value)));
            }
            return self.intrinsic(&tag, operand);
        }
        Some(match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => serde_json::to_value(n).expect("a YAML number is a JSON number"),
            Value::String(s) => Json::String(s.clone()),
            Value::Sequence(items) => {
                Json::Array(items.iter().filter_map(|i| self.eval(i)).collect())
            }
            Value::Mapping(map) => Json::Object(
                map.iter()
                    .filter_map(|(k, v)| {
                        let key = k.as_str().expect("keys are text").to_owned();
                        self.eval(v).map(|v| (key, v))
                    })
                    .collect(),
            ),
            Value::Tagged(_) => unreachable!("handled above"),
        })
    }

    /// `eval` of a value that must be text.
    pub(crate) fn text(&self, value: &Value) -> String {
        match self.eval(value) {
            Some(Json::String(s)) => s,
            other => panic!("{value:?} evaluates to {other:?}, not text"),
        }
    }

    fn intrinsic(&self, tag: &str, operand: &Value) -> Option<Json> {
        let args = || operand.as_sequence().expect("a list of arguments");
        match tag {
            "Ref" => self.reference(operand.as_str().expect("!Ref takes a name")),
            "GetAtt" => Some(Json::String(
                self.attribute(operand.as_str().expect("!GetAtt Id.Attribute")),
            )),
            "Sub" => Some(Json::String(self.sub(operand))),
            "If" => {
                let args = args();
                let name = args[0].as_str().expect("!If names a condition");
                self.eval(&args[if self.condition(name) { 1 } else { 2 }])
            }
            other => panic!("intrinsic !{other} is not evaluated here"),
        }
    }

    fn truth(&self, value: &Value) -> bool {
        let (tag, operand) = tagged(value).unwrap_or_else(|| panic!("not a condition: {value:?}"));
        let args = || operand.as_sequence().expect("a list of arguments");
        match tag.as_str() {
            "Equals" => {
                let [left, right] = &args()[..] else {
                    panic!("!Equals takes two values")
                };
                json_text(&self.eval(left)) == json_text(&self.eval(right))
            }
            "Not" => !self.truth(&args()[0]),
            "And" => args().iter().all(|c| self.truth(c)),
            "Or" => args().iter().any(|c| self.truth(c)),
            "Condition" => self.condition(operand.as_str().expect("!Condition names one")),
            other => panic!("!{other} is not a condition"),
        }
    }

    fn reference(&self, name: &str) -> Option<Json> {
        if name == "AWS::NoValue" {
            return None;
        }
        if let Some(value) = self.values.get(name) {
            return Some(Json::String(value.clone()));
        }
        assert!(
            self.template["Parameters"].get(name).is_none(),
            "parameter {name} has no default: give it to Stack::new"
        );
        assert!(
            self.template["Resources"].get(name).is_some(),
            "!Ref {name} names nothing"
        );
        Some(Json::String(format!("<{name}>")))
    }

    fn attribute(&self, target: &str) -> String {
        let (id, attribute) = target.split_once('.').expect("Id.Attribute");
        let kind = at(self.template, &["Resources", id, "Type"]).as_str();
        match (kind, attribute) {
            (Some("AWS::S3::Bucket"), "Arn") => {
                format!("arn:{}:s3:::<{id}>", self.values["AWS::Partition"])
            }
            _ => format!("<{target}>"),
        }
    }

    /// `!Sub text` or `!Sub [text, {name: value}]`: `${name}` replaced by the local value, a
    /// parameter, a resource or an attribute; `${!text}` is the literal `${text}`.
    fn sub(&self, operand: &Value) -> String {
        let (text, local) = match operand {
            Value::String(text) => (text.as_str(), BTreeMap::new()),
            Value::Sequence(args) => (
                args[0].as_str().expect("!Sub's first argument is its text"),
                args[1]
                    .as_mapping()
                    .expect("!Sub's variables are a mapping")
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().expect("names are text"),
                            json_text(&self.eval(v)),
                        )
                    })
                    .collect(),
            ),
            other => panic!("not a !Sub: {other:?}"),
        };
        substitute(text, |name| match local.get(name) {
            Some(value) => value.clone(),
            None if name.contains('.') => self.attribute(name),
            None => json_text(&self.reference(name)),
        })
    }
}

/// A `!Sub` template string with each `${name}` replaced by `value_of(name)`, and `${!text}` as
/// the literal `${text}`, as CloudFormation renders it.
pub(super) fn substitute(template: &str, value_of: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("every ${ is closed");
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(&value_of(name)),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A parameter default as CloudFormation passes it: text.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// An evaluated scalar as text (`!Sub` and `!Equals` compare and insert text).
fn json_text(value: &Option<Json>) -> String {
    match value {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        Some(Json::Bool(b)) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}
