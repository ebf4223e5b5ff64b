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
