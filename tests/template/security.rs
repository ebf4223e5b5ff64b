//! Storage and permissions: the bucket is encrypted and private, TLS only, and every role may
//! do only what it needs.

use super::*;

#[test]
fn bucket_is_encrypted_and_never_public() {
    // Given the bucket the stack creates
    let t = template();
    let (id, bucket) = resources_of_type(&t, "AWS::S3::Bucket")
        .pop()
        .expect("the stack can create a bucket");
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
    let (_, policy) = resources_of_type(&t, "AWS::S3::BucketPolicy")
        .pop()
        .expect("a bucket policy");
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
fn function_may_list_read_and_create_objects_only_under_its_two_prefixes_and_never_delete() {
    // Given the ingest function's role
    let t = template();
    let (_, statements) = role_statements(&t, FUNCTION);
    // When its S3 statements are read
    let s3: Vec<&Value> = statements
        .iter()
        .copied()
        .filter(|s| !s3_actions(s).is_empty())
        .collect();
    let actions: BTreeSet<&str> = s3.iter().flat_map(|s| s3_actions(s)).collect();
    // Then it may list, read and create objects, and nothing else: no delete of any kind (an
    // ingest never removes what landed; only the compaction function may)
    assert_eq!(
        actions,
        BTreeSet::from(["s3:ListBucket", "s3:GetObject", "s3:PutObject"])
    );
    assert!(actions.iter().all(|a| !a.contains("Delete")), "{actions:?}");
    let prefixes = set(&["data/*", "quarantine/*"]);
    let objects = set(&[
        "arn:aws:s3:::bucket/data/*",
        "arn:aws:s3:::bucket/quarantine/*",
    ]);
    // and it lists the bucket only under the data and quarantine prefixes (the hour folders it
    // reads before writing, and the quarantine of the run hour and the one before)
    let list = by_sid(&statements, "ListDataAndQuarantineFolders");
    assert_eq!(strings_in(&list["Action"]), ["s3:ListBucket"]);
    assert_eq!(
        rendered_s3(&list["Resource"]),
        set(&["arn:aws:s3:::bucket"])
    );
    let condition = at(list, &["Condition"]).as_mapping().expect("a condition");
    assert_eq!(condition.len(), 1, "{condition:?}");
    assert_eq!(
        rendered_s3(at(list, &["Condition", "StringLike", "s3:prefix"])),
        prefixes
    );
    // and it reads and creates objects only under those two prefixes, one action a statement
    let read = by_sid(&statements, "ReadDataAndQuarantineObjects");
    assert_eq!(strings_in(&read["Action"]), ["s3:GetObject"]);
    assert_eq!(rendered_s3(&read["Resource"]), objects);
    let put = by_sid(&statements, "PutDataAndQuarantineObjects");
    assert_eq!(strings_in(&put["Action"]), ["s3:PutObject"]);
    assert_eq!(rendered_s3(&put["Resource"]), objects);
    assert_eq!(s3.len(), 3, "{s3:?}");
}

#[test]
fn every_other_permission_names_the_one_resource_it_needs() {
    // Given the statements of the function role's policies, by Sid
    let t = template();
    let role = get_att_resource(at(properties(&t, FUNCTION), &["Role"]));
    let role_policies = at(properties(&t, role), &["Policies"]);
    let statements = statements_in(role_policies);
    assert_eq!(
        sids(&statements),
        BTreeSet::from([
            "WriteOwnLogs",
            "ListDataAndQuarantineFolders",
            "ReadDataAndQuarantineObjects",
            "PutDataAndQuarantineObjects",
            "ReadFernetKey",
            "SendFailedInvocations",
            "DecryptFernetKey",
        ])
    );
    // Then logs go only to its own log group and failures only to its own queue
    let logs = by_sid(&statements, "WriteOwnLogs");
    assert_eq!(get_att_resource(&logs["Resource"]), "LogEtlLogGroup");
    assert_eq!(
        strings_in(&logs["Action"]),
        vec!["logs:CreateLogStream", "logs:PutLogEvents"]
    );
    let queue = by_sid(&statements, "SendFailedInvocations");
    assert_eq!(get_att_resource(&queue["Resource"]), "DeadLetterQueue");
    assert_eq!(strings_in(&queue["Action"]), vec!["sqs:SendMessage"]);
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
    let (_, bucket) = resources_of_type(&t, "AWS::S3::Bucket")
        .pop()
        .expect("the stack can create a bucket");
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
