//! The function: runtime and build, its concurrency and timeout, and its settings under the
//! code's variable names.

use super::*;

#[test]
fn function_is_the_rust_binary_on_arm64_al2023() {
    // Given the template
    let t = template();
    // When the function's definition is read
    let function = resource(&t, FUNCTION);
    let props = at(function, &["Properties"]);
    // Then it is the cargo-lambda build of the Lambda binary on provided.al2023, arm64
    assert_eq!(text(function, &["Type"]), "AWS::Serverless::Function");
    assert_eq!(text(props, &["Runtime"]), "provided.al2023");
    let architectures = at(props, &["Architectures"]).as_sequence().expect("a list");
    assert_eq!(architectures, &vec![Value::from("arm64")]);
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
}

#[test]
fn one_run_at_a_time_and_each_ends_before_the_next_is_due() {
    // Given the template
    let t = template();
    let props = properties(&t, FUNCTION);
    // When its concurrency and timeout are read
    let reserved = number(props, &["ReservedConcurrentExecutions"]);
    let timeout = number(props, &["Timeout"]);
    // Then runs never overlap, and a run times out well before the next 3-minute tick
    assert_eq!(reserved, 1);
    assert!(
        timeout > 0 && timeout < THREE_MINUTES_IN_SECONDS,
        "timeout {timeout} s"
    );
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
