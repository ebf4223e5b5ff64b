//! Storage and permissions: the bucket is encrypted and private, TLS only, and every role may
//! do only what it needs.

use super::iam::{Decision, Request, decide};
use super::*;

#[test]
fn bucket_is_encrypted_and_never_public() {
    // Given the bucket the stack creates
    let t = template();
    let (id, bucket) = resource_of_type(&t, "AWS::S3::Bucket", "the stack can create a bucket");
    let props = at(bucket, &["Properties"]);
    // When its encryption and public access settings are read
    let rule = at(
        props,
        &["BucketEncryption", "ServerSideEncryptionConfiguration", "0"],
    );
    let algorithm = text(rule, &["ServerSideEncryptionByDefault", "SSEAlgorithm"]);
    let block = at(props, &["PublicAccessBlockConfiguration"]);
    // Then objects are encrypted at rest and all four public-access blocks are on
    assert!(
        ["AES256", "aws:kms", "aws:kms:dsse"].contains(&algorithm),
        "{id}: {algorithm}"
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(at(block, &[flag]).as_bool(), Some(true), "{flag}");
    }
    let ownership = text(
        props,
        &["OwnershipControls", "Rules", "0", "ObjectOwnership"],
    );
    assert_eq!(ownership, "BucketOwnerEnforced");
}

#[test]
fn bucket_policy_refuses_requests_without_tls() {
    // Given the policy on the bucket the stack creates
    let t = template();
    let (_, policy) = resource_of_type(&t, "AWS::S3::BucketPolicy", "a bucket policy");
    // When its statements are read
    let statements = statements_in(policy);
    // Then one denies every request that is not over TLS
    let denies_plain_http = statements.iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Deny")
            && s.get("Condition")
                .and_then(|c| c.get("Bool"))
                .and_then(|b| b.get("aws:SecureTransport"))
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or(v.as_bool().map(|b| b.to_string()))
                })
                .as_deref()
                == Some("false")
    });
    assert!(denies_plain_http, "no Deny on aws:SecureTransport = false");
}

#[test]
fn no_policy_grants_a_wildcard_action_or_resource() {
    // Given every IAM statement in the template (the function's Policies and all AWS::IAM::*
    // resources), and every Allow statement anywhere else
    let t = template();
    let mut checked: Vec<&Value> = Vec::new();
    for (id, r) in at(&t, &["Resources"])
        .as_mapping()
        .expect("Resources")
        .iter()
    {
        let kind = text(r, &["Type"]);
        let statements = statements_in(r);
        if kind.starts_with("AWS::IAM::") {
            checked.extend(statements);
        } else if kind == "AWS::Serverless::Function" {
            if let Some(policies) = r.get("Properties").and_then(|p| p.get("Policies")) {
                // Managed policies and SAM policy templates hide their statements from this
                // check, so only inline documents are accepted.
                let inline = |p: &Value| p.get("Statement").is_some();
                let all_inline = match policies {
                    Value::Sequence(list) => list.iter().all(inline),
                    single => inline(single),
                };
                assert!(
                    all_inline,
                    "{id:?}: Policies must be inline policy documents"
                );
                checked.extend(statements_in(policies));
            }
        } else {
            checked.extend(
                statements
                    .into_iter()
                    .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow")),
            );
        }
    }
    assert!(
        checked.len() >= 5,
        "found only {} statements",
        checked.len()
    );
    // When their actions and resources are read (inside !Sub, !If, ... too)
    for statement in checked {
        let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
        // Then no action has a wildcard and no resource is a bare "*"
        assert!(
            statement.get("NotAction").is_none() || !allow,
            "{statement:?}"
        );
        assert!(
            statement.get("NotResource").is_none() || !allow,
            "{statement:?}"
        );
        let actions = strings_in(
            statement
                .get("Action")
                .expect("every statement names actions"),
        );
        assert!(!actions.is_empty());
        for action in actions {
            assert!(!action.contains('*'), "wildcard action {action:?}");
        }
        // and a resource's only wildcard is an object prefix's trailing "/*" (no "arn:...:*:*")
        if let Some(resources) = statement.get("Resource") {
            for resource in strings_in(resources) {
                let stars = resource.matches('*').count();
                assert!(
                    stars == 0 || (stars == 1 && resource.ends_with("/*") && resource.len() > 2),
                    "wildcard resource {resource:?} in {statement:?}"
                );
            }
        }
    }
}

#[test]
fn each_role_may_take_only_its_s3_actions_under_its_prefixes() {
    let t = template();
    for f in &FUNCTIONS {
        // Given the function's role
        let (role, statements) = role_statements(&t, f.id);
        let expected_sids = ROLE_SIDS.iter().chain(f.sids).copied().collect();
        assert_eq!(sids(&statements), expected_sids, "{role}");
        // When the S3 actions it allows are read, each with the resources it is allowed on
        let allows: Vec<&Value> = statements
            .iter()
            .copied()
            .filter(|s| text(s, &["Effect"]) == "Allow")
            .collect();
        let mut granted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for statement in &allows {
            for action in s3_actions(statement) {
                granted
                    .entry(action)
                    .or_default()
                    .extend(rendered_s3(&t, &statement["Resource"]));
            }
        }
        // Then it may list the bucket and take its object actions under its prefixes, and
        // nothing else (the ingest role never deletes; the compaction role has nothing on
        // quarantine)
        let mut expected: BTreeMap<&str, BTreeSet<String>> =
            BTreeMap::from([("s3:ListBucket", set(&["arn:aws:s3:::bucket"]))]);
        for (action, prefixes) in f.objects {
            let arns = prefixes
                .iter()
                .map(|p| format!("arn:aws:s3:::bucket/{p}/*"));
            expected.insert(action, arns.collect());
        }
        assert_eq!(granted, expected, "{role}");
        // and it lists only under those prefixes (the hour folders it reads)
        for list in allows
            .iter()
            .filter(|s| s3_actions(s).contains("s3:ListBucket"))
        {
            let condition = at(list, &["Condition"]).as_mapping().expect("a condition");
            assert_eq!(condition.len(), 1, "{role}: {condition:?}");
            let prefixes: BTreeSet<String> = f.lists.iter().map(|p| format!("{p}/*")).collect();
            assert_eq!(
                rendered_s3(&t, at(list, &["Condition", "StringLike", "s3:prefix"])),
                prefixes,
                "{role}"
            );
        }
        // And its logs go only to its own log group, its failures only to the stack's queue
        let logs = by_sid(&statements, "WriteOwnLogs");
        assert_eq!(get_att_resource(&logs["Resource"]), f.log_group, "{role}");
        assert_eq!(
            strings_in(&logs["Action"]),
            ["logs:CreateLogStream", "logs:PutLogEvents"]
        );
        let queue = by_sid(&statements, "SendFailedInvocations");
        assert_eq!(get_att_resource(&queue["Resource"]), "DeadLetterQueue");
        assert_eq!(strings_in(&queue["Action"]), ["sqs:SendMessage"]);
    }
}

/// The statements of `value`'s policy documents, as `stack` evaluates them.
fn evaluated_statements(stack: &Stack, value: &Value) -> Vec<serde_json::Value> {
    fn collect(value: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("Statement", serde_json::Value::Array(items)) => out.extend(items.clone()),
                        ("Statement", single) => out.push(single.clone()),
                        _ => collect(child, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(&stack.eval(value).expect("a policy"), &mut found);
    found
}

#[test]
fn a_put_without_if_none_match_is_refused_by_each_role_and_by_the_bucket_policy() {
    let t = template();
    // Given a stack that creates its bucket, and one that writes to an existing bucket (which
    // gets no bucket policy from the stack)
    for (stack, bucket) in [
        (Stack::new(&t, &[]), CREATED_BUCKET),
        (existing_bucket_stack(&t), "bucket"),
    ] {
        // and each function's role, which grants its puts, and the bucket policy where the
        // stack has one, which grants nothing
        let mut policies: Vec<(String, Vec<serde_json::Value>, Vec<&str>, Decision)> = Vec::new();
        for f in &FUNCTIONS {
            let (role, _) = role_statements(&t, f.id);
            let (_, put_prefixes) = f
                .objects
                .iter()
                .find(|(action, _)| *action == "s3:PutObject")
                .expect("each function writes");
            let statements = evaluated_statements(&stack, at(properties(&t, role), &["Policies"]));
            policies.push((
                role.to_owned(),
                statements,
                put_prefixes.to_vec(),
                Decision::Allowed,
            ));
        }
        let policy = resource(&t, "DataBucketPolicy");
        if stack.condition(text(policy, &["Condition"])) {
            let statements =
                evaluated_statements(&stack, at(policy, &["Properties", "PolicyDocument"]));
            let prefixes = vec!["data", "quarantine"];
            policies.push((
                "DataBucketPolicy".to_owned(),
                statements,
                prefixes,
                Decision::NotAllowed,
            ));
        } else {
            assert_eq!(bucket, "bucket", "only an existing bucket has no policy");
        }
        for (name, statements, prefixes, with_header) in &policies {
            for prefix in prefixes {
                // When an object under the prefix is put without If-None-Match, and with it
                let key = format!(
                    "arn:aws:s3:::{bucket}/{prefix}/2023/03/18/15/0802284_0802284_5d41402a.json.gz"
                );
                let put = |keys: &[(&'static str, &'static str)]| Request {
                    action: "s3:PutObject",
                    resource: &key,
                    keys: keys.iter().copied().collect(),
                };
                // Then the first is denied, whatever else allows it, and the create is not
                assert_eq!(
                    decide(statements, &put(&[])),
                    Decision::Denied,
                    "{name}: {key}"
                );
                assert_eq!(
                    decide(statements, &put(&[("s3:if-none-match", "*")])),
                    *with_header,
                    "{name}: {key}"
                );
            }
        }
        assert_eq!(policies.len(), if bucket == "bucket" { 2 } else { 3 });
    }
}

#[test]
fn every_put_the_code_makes_is_a_conditional_create() {
    // Given the code's sources
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut puts = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .expect("src is readable")
                    .map(|e| e.expect("an entry").path()),
            );
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        // When every PutObject request built there is read up to where it is sent
        let source = std::fs::read_to_string(&path).expect("a source file");
        for (start, _) in source.match_indices(".put_object()") {
            let chain = &source[start..];
            let end = chain.find(".send()").expect("the request is sent");
            puts.push((path.display().to_string(), chain[..end].to_owned()));
        }
    }
    // Then there is one, and each carries If-None-Match: *, which the policies require
    assert!(!puts.is_empty(), "no put_object in src/");
    for (file, chain) in &puts {
        assert!(chain.contains(".if_none_match(\"*\")"), "{file}: {chain}");
    }
}

#[test]
fn the_ingest_role_reads_its_one_secret_and_decrypts_only_with_the_key_given() {
    // Given the statements of the ingest function role's policies, by Sid
    let t = template();
    let role = get_att_resource(at(properties(&t, FUNCTION), &["Role"]));
    let role_policies = at(properties(&t, role), &["Policies"]);
    let statements = statements_in(role_policies);
    // and the key is read from the one secret: the stack's, or the one named by parameter
    let secret = by_sid(&statements, "ReadFernetKey");
    assert_eq!(
        strings_in(&secret["Action"]),
        vec!["secretsmanager:GetSecretValue"]
    );
    let (condition, created, existing) = if_branches(&secret["Resource"]);
    assert_eq!(
        (condition, ref_name(created), ref_name(existing)),
        ("CreateSecret", "FernetSecret", "ExistingSecretArn")
    );
    assert_eq!(
        resource(&t, "FernetSecret")["Type"].as_str(),
        Some("AWS::SecretsManager::Secret")
    );
    // and KMS decrypt exists only when a customer key is named, for that key, via Secrets Manager
    let listed = strings_in(role_policies);
    assert!(
        listed.contains(&"HasSecretKmsKey"),
        "KMS statement is not conditional"
    );
    let kms = by_sid(&statements, "DecryptFernetKey");
    assert_eq!(strings_in(&kms["Action"]), vec!["kms:Decrypt"]);
    assert_eq!(ref_name(&kms["Resource"]), "SecretKmsKeyArn");
    assert!(
        sub_text(&kms["Condition"]["StringEquals"]["kms:ViaService"])
            .starts_with("secretsmanager."),
        "{kms:?}"
    );
}

#[test]
fn every_security_scan_finding_left_open_says_why() {
    // Given the checks each resource tells the security scan (checkov) to skip
    let t = template();
    let mut skipped = BTreeSet::new();
    for (id, r) in at(&t, &["Resources"]).as_mapping().expect("Resources") {
        let Some(skips) = r.get("Metadata").and_then(|m| m.get("checkov")) else {
            continue;
        };
        let id = id.as_str().expect("logical ids are text");
        for skip in at(skips, &["skip"]).as_sequence().expect("a list of skips") {
            // Then each names a check and gives a one-line reason
            let check = text(skip, &["id"]);
            let reason = text(skip, &["comment"]);
            assert!(check.starts_with("CKV_"), "{id}: {check}");
            assert!(
                reason.len() >= 20 && !reason.contains('\n'),
                "{id} skips {check} without a one-line reason"
            );
            assert!(skipped.insert((id, check)), "{id} skips {check} twice");
        }
    }
    // (scripts/check-template runs the scan and fails on any finding not skipped so)
    assert!(!skipped.is_empty());
}

#[test]
fn dead_letter_queue_is_encrypted_at_rest() {
    // Given the dead-letter queue (it holds the events of failed runs)
    let t = template();
    let props = properties(&t, "DeadLetterQueue");
    // Then it is encrypted with SQS-managed keys or a KMS key
    let sse = props.get("SqsManagedSseEnabled").and_then(Value::as_bool) == Some(true);
    assert!(sse || props.get("KmsMasterKeyId").is_some(), "{props:?}");
}

#[test]
fn bucket_access_logs_go_to_the_bucket_given_for_them() {
    // Given the created bucket's logging configuration
    let t = template();
    let (_, bucket) = resource_of_type(&t, "AWS::S3::Bucket", "the stack can create a bucket");
    let (condition, logging, otherwise) =
        if_branches(at(bucket, &["Properties", "LoggingConfiguration"]));
    // Then server access logs go to the bucket named by parameter, when one is named
    assert_eq!(condition, "HasAccessLogBucket");
    assert_eq!(
        ref_name(at(logging, &["DestinationBucketName"])),
        "AccessLogBucketName"
    );
    assert_eq!(ref_name(otherwise), "AWS::NoValue");
    assert_eq!(default_of(&t, "AccessLogBucketName").as_str(), Some(""));
}
