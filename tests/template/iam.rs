//! How IAM decides one request against policy statements (as a stack evaluates them): an
//! explicit Deny wins, then an Allow, else the request is not allowed. Enough of the policy
//! language for the template's statements: actions and resources with `*` and `?` wildcards,
//! and the condition operators they use; any other operator fails the check rather than be
//! guessed.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// What IAM decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// A statement denies it.
    Denied,
    /// A statement allows it and none denies it.
    Allowed,
    /// No statement mentions it (refused, unless another policy allows it).
    NotAllowed,
}

/// One request: an action on a resource, with its condition keys (a key not given is absent).
pub(super) struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    pub keys: BTreeMap<&'a str, &'a str>,
}

/// The decision of `statements` on `request`.
pub(super) fn decide(statements: &[Json], request: &Request) -> Decision {
    let applying: Vec<&str> = statements
        .iter()
        .filter(|s| applies(s, request))
        .map(|s| s["Effect"].as_str().expect("every statement has an Effect"))
        .collect();
    if applying.contains(&"Deny") {
        Decision::Denied
    } else if applying.contains(&"Allow") {
        Decision::Allowed
    } else {
        Decision::NotAllowed
    }
}

fn applies(statement: &Json, request: &Request) -> bool {
    assert!(
        statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
        "NotAction and NotResource are not evaluated here: {statement}"
    );
    let any = |patterns: &Json, value: &str, fold: bool| {
        texts(patterns).iter().any(|p| {
            if fold {
                matches(&p.to_lowercase(), &value.to_lowercase())
            } else {
                matches(p, value)
            }
        })
    };
    any(&statement["Action"], request.action, true)
        && any(&statement["Resource"], request.resource, false)
        && statement
            .get("Condition")
            .and_then(Json::as_object)
            .is_none_or(|operators| {
                operators
                    .iter()
                    .all(|(operator, keys)| condition_holds(operator, keys, request))
            })
}

/// Every key under one operator holds (each key holds for any of its values).
fn condition_holds(operator: &str, keys: &Json, request: &Request) -> bool {
    keys.as_object()
        .expect("an operator maps keys to values")
        .iter()
        .all(|(key, values)| {
            let given = request.keys.get(key.as_str()).copied();
            texts(values).iter().any(|v| match operator {
                "Null" => (given.is_none()).to_string() == *v,
                "Bool" | "StringEquals" => given == Some(v.as_str()),
                "StringLike" => given.is_some_and(|g| matches(v, g)),
                other => panic!("condition operator {other} is not evaluated here"),
            })
        })
}

/// One text or a list of them.
fn texts(value: &Json) -> Vec<String> {
    match value {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items.iter().flat_map(texts).collect(),
        Json::Bool(b) => vec![b.to_string()],
        other => panic!("not text: {other}"),
    }
}

/// IAM's wildcard match: `*` is any run of characters, `?` any one.
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => {
            pattern.len() == value.len()
                && pattern
                    .chars()
                    .zip(value.chars())
                    .all(|(p, v)| p == '?' || p == v)
        }
        Some((head, tail)) => {
            value.len() >= head.len()
                && matches(head, &value[..head.len()])
                && (head.len()..=value.len())
                    .any(|i| value.is_char_boundary(i) && matches(tail, &value[i..]))
        }
    }
}

#[test]
fn wildcards_match_as_iam_matches_them() {
    // Given patterns with and without wildcards
    // Then `*` matches any run, also an empty one or one with slashes, and `?` one character
    assert!(matches(
        "arn:aws:s3:::b/data/*",
        "arn:aws:s3:::b/data/2023/x.json.gz"
    ));
    assert!(matches("arn:aws:s3:::b/data/*", "arn:aws:s3:::b/data/"));
    assert!(!matches(
        "arn:aws:s3:::b/data/*",
        "arn:aws:s3:::b/quarantine/x"
    ));
    assert!(!matches("arn:aws:s3:::b/data/*", "arn:aws:s3:::b/data"));
    assert!(matches("s3:*Object", "s3:PutObject"));
    assert!(matches("a?c", "abc") && !matches("a?c", "ac"));
    assert!(matches("exact", "exact") && !matches("exact", "exact2"));
}

#[test]
fn a_deny_wins_over_an_allow_and_a_null_condition_tests_that_a_key_is_absent() {
    // Given an Allow of every put, and a Deny of a put without If-None-Match
    let statements = [
        serde_json::json!({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}),
        serde_json::json!({"Effect": "Deny", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::b/*",
            "Condition": {"Null": {"s3:if-none-match": "true"}}}),
    ];
    let put = |keys: &[(&'static str, &'static str)]| Request {
        action: "s3:putobject",
        resource: "arn:aws:s3:::b/k",
        keys: keys.iter().copied().collect(),
    };
    // Then a put without the header is denied, one with it is allowed, and another action is
    // not allowed
    assert_eq!(decide(&statements, &put(&[])), Decision::Denied);
    assert_eq!(
        decide(&statements, &put(&[("s3:if-none-match", "*")])),
        Decision::Allowed
    );
    let get = Request {
        action: "s3:GetObject",
        ..put(&[])
    };
    assert_eq!(decide(&statements, &get), Decision::NotAllowed);
}
