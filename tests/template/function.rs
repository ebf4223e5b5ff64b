//! The function: runtime and build, its concurrency and timeout, and its settings under the
//! code's variable names.

use super::*;

#[test]
fn both_functions_are_the_one_rust_binary_on_arm64_al2023() {
    let t = template();
    let ingest = resource(&t, FUNCTION);
    for f in &FUNCTIONS {
        // Given the function's definition, with what Globals gives both
        let function = resource(&t, f.id);
        let props = at(function, &["Properties"]);
        // Then it is the cargo-lambda build of the Lambda binary on provided.al2023, arm64
        assert_eq!(text(function, &["Type"]), "AWS::Serverless::Function");
        assert_eq!(text(props, &["Runtime"]), "provided.al2023");
        let architectures = at(props, &["Architectures"]).as_sequence().expect("a list");
        assert_eq!(architectures, &vec![Value::from("arm64")], "{}", f.id);
        assert_eq!(text(props, &["Handler"]), "bootstrap");
        assert_eq!(text(props, &["CodeUri"]), ".");
        assert_eq!(
            text(function, &["Metadata", "BuildMethod"]),
            "rust-cargolambda"
        );
        assert_eq!(
            text(function, &["Metadata", "BuildProperties", "Binary"]),
            "log-etl-lambda"
        );
        // and its whole Metadata is the ingest function's, since `sam build` builds the binary
        // once for both only then (the scan's skips included)
        assert_eq!(
            at(function, &["Metadata"]),
            at(ingest, &["Metadata"]),
            "{}",
            f.id
        );
    }
}

#[test]
fn each_function_runs_one_at_a_time_ends_before_its_next_run_and_logs_to_its_own_group() {
    let t = template();
    let mut groups = BTreeSet::new();
    for f in &FUNCTIONS {
        // Given the function's concurrency, timeout and logging
        let props = properties(&t, f.id);
        let reserved = number(props, &["ReservedConcurrentExecutions"]);
        let timeout = number(props, &["Timeout"]);
        let group = ref_name(at(props, &["LoggingConfig", "LogGroup"]));
        // Then runs never overlap, and a run times out before the next one is due (the
        // ingest's before the next 3-minute tick)
        assert_eq!(reserved, 1, "{}", f.id);
        assert!(
            timeout > 0 && timeout < f.period_seconds(),
            "{}: timeout {timeout} s",
            f.id
        );
        // and it writes JSON logs to a log group of its own
        assert_eq!(text(props, &["LoggingConfig", "LogFormat"]), "JSON");
        assert_eq!(group, f.log_group);
        assert_eq!(text(resource(&t, group), &["Type"]), "AWS::Logs::LogGroup");
        let name = sub_text(at(properties(&t, group), &["LogGroupName"]));
        assert!(name.starts_with("/aws/lambda/"), "{name}");
        assert!(groups.insert(name), "{}: {name} is shared", f.id);
    }
}

#[test]
fn function_reads_its_settings_under_the_codes_variable_names() {
    // Given the template's environment for the function
    let t = template();
    let env = function_environment(&t);
    let names: BTreeSet<&str> = env
        .keys()
        .map(|k| k.as_str().expect("names are text"))
        .collect();
    // When compared with the variables the code reads (its one list of settings)
    let known: BTreeSet<&str> = var::ALL.iter().map(|s| s.name).collect();
    // Then the required ones are set and none is misspelt
    for required in [
        var::LOG_API_URL,
        var::BUCKET_NAME,
        var::FERNET_SECRET_ID,
        var::KEY_PREFIX,
        var::QUARANTINE_PREFIX,
        var::PARTITION_STYLE,
    ] {
        let required = required.name;
        assert!(
            names.contains(required),
            "{required} is not set on the function"
        );
    }
    for name in &names {
        assert!(
            known.contains(name),
            "{name} is not a variable the code reads"
        );
    }
    // And a key is never put in the environment: it comes from the secret
    assert!(!names.contains(var::FERNET_KEY.name));
    // And the start delay defaults to the original script's second 5
    assert_eq!(ref_name(&env[var::START_DELAY_MS.name]), "StartDelayMs");
    assert_eq!(default_of(&t, "StartDelayMs").as_u64(), Some(5000));
}

#[test]
fn local_invoke_variables_are_ones_each_function_declares() {
    // Given the variables `sam local invoke` is given (events/env.json), per function
    let t = template();
    let text = std::fs::read_to_string(ENV_JSON).expect("events/env.json");
    let entries: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&text).expect("a map of functions to variables");
    // Then there is an entry for each function, and nothing else
    assert_eq!(
        entries.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([FUNCTION, COMPACT_FUNCTION])
    );
    // and each variable is one the function declares (the SAM CLI overrides only those, and
    // ignores the rest)
    for (function, variables) in &entries {
        let declared = variable_names(&t, function);
        for name in variables.keys() {
            assert!(
                declared.contains(name.as_str()),
                "{function}: {name} is not declared in the template, so it would be ignored"
            );
        }
    }
    // And both functions use the same emulator and bucket, with the code's defaults for the
    // folders
    let (ingest, compact) = (&entries[FUNCTION], &entries[COMPACT_FUNCTION]);
    for shared in [
        var::AWS_ENDPOINT_URL,
        var::BUCKET_NAME,
        var::KEY_PREFIX,
        var::PARTITION_STYLE,
    ] {
        let name = shared.name;
        assert!(compact.contains_key(name), "{name}");
        assert_eq!(compact.get(name), ingest.get(name), "{name}");
    }
    assert_eq!(
        Some(&compact[var::KEY_PREFIX.name]),
        var::KEY_PREFIX.default_text().as_ref()
    );
}

#[test]
fn globals_merge_into_each_function_as_sam_merges_them() {
    // Given a template whose Globals and function both set scalars, maps and lists
    let written: Value = serde_norway::from_str(
        r#"
Globals:
  Function:
    MemorySize: 256
    Architectures: [x86_64]
    Layers: [a]
    Environment: {Variables: {SHARED: g, BOTH: g}}
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      MemorySize: 512
      Architectures: [arm64]
      Layers: [b]
      Environment: {Variables: {BOTH: f, OWN: f}}
  G:
    Type: AWS::Serverless::Function
  Q:
    Type: AWS::SQS::Queue
"#,
    )
    .expect("YAML");
    // When Globals is applied
    let t = with_globals_applied(written);
    // Then the function's scalar wins, maps merge key by key, lists are the global items then
    // the function's, and Architectures is the function's alone
    let f = properties(&t, "F");
    assert_eq!(number(f, &["MemorySize"]), 512);
    assert_eq!(strings_in(at(f, &["Architectures"])), ["arm64"]);
    assert_eq!(strings_in(at(f, &["Layers"])), ["a", "b"]);
    let env = at(f, &["Environment", "Variables"]);
    assert_eq!(
        (
            text(env, &["SHARED"]),
            text(env, &["BOTH"]),
            text(env, &["OWN"])
        ),
        ("g", "f", "f")
    );
    // and a function that sets nothing gets the globals; other resources and the section
    // itself are gone from what SAM hands on
    assert_eq!(number(properties(&t, "G"), &["MemorySize"]), 256);
    assert!(resource(&t, "Q").get("Properties").is_none());
    assert!(t.get("Globals").is_none());
}
