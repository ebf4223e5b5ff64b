//! The schedule: when it fires, what it sends, how failures are retried and kept; and the
//! checked-in sample event.

use super::*;

/// Values of one cron field over `min..=max`; handles what the schedule uses: `*`, `?`, `n`,
/// `a/step`, `a-b` and comma lists.
pub(super) fn expand_cron_field(field: &str, min: u32, max: u32) -> BTreeSet<u32> {
    field
        .split(',')
        .flat_map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, step.parse::<usize>().expect("numeric step")),
                None => (part, 1),
            };
            let (from, to) = match range {
                "*" | "?" => (min, max),
                _ => match range.split_once('-') {
                    Some((a, b)) => (a.parse().expect("number"), b.parse().expect("number")),
                    // `a/step` runs from a to the end of the field; a plain `a` is just a.
                    None if part.contains('/') => (range.parse().expect("number"), max),
                    None => {
                        let n = range.parse().expect("number");
                        (n, n)
                    }
                },
            };
            assert!(
                min <= from && from <= to && to <= max,
                "{part} is outside {min}..={max}"
            );
            (from..=to).step_by(step).collect::<Vec<_>>()
        })
        .collect()
}

/// The six fields of `cron(...)`.
pub(super) fn cron_fields(expression: &str) -> Vec<&str> {
    let inner = expression
        .strip_prefix("cron(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{expression} is not a cron() expression"));
    inner.split_whitespace().collect()
}

/// Minutes of the day (0..1440) at which a daily-uniform cron expression fires.
pub(super) fn firing_minutes_of_day(expression: &str) -> Vec<u32> {
    let fields = cron_fields(expression);
    assert_eq!(
        fields.len(),
        6,
        "EventBridge cron has six fields: {expression}"
    );
    let minutes = expand_cron_field(fields[0], 0, 59);
    let hours = expand_cron_field(fields[1], 0, 23);
    hours
        .iter()
        .flat_map(|h| minutes.iter().map(move |m| h * 60 + m))
        .collect()
}

#[test]
fn each_default_schedule_fires_every_day_on_its_minutes_a_period_apart() {
    let t = template();
    for f in &FUNCTIONS {
        // Given the schedule expression parameter the function's event uses
        let event = schedule_event_of(&t, f.id);
        let parameter = ref_name(at(event, &["Properties", "ScheduleExpression"]));
        let expression = default_of(&t, parameter).as_str().expect("text");
        assert_eq!((parameter, expression), f.schedule);
        // When its six fields are expanded
        let fields = cron_fields(expression);
        assert_eq!(expand_cron_field(fields[1], 0, 23).len(), 24, "every hour");
        assert_eq!(
            expand_cron_field(fields[2], 1, 31).len(),
            31,
            "every day of the month"
        );
        assert_eq!(expand_cron_field(fields[3], 1, 12).len(), 12, "every month");
        assert_eq!(
            fields[4], "?",
            "day-of-week is left open, as EventBridge requires with a day-of-month"
        );
        assert_eq!(fields[5], "*", "every year");
        // Then it fires from its first minute of the day, exactly a period apart (across hours
        // and midnight too), at second 0: EventBridge cron has no seconds field. The ingest
        // function every 3 minutes on the minute, 480 times a day; the compaction at minute 15
        // of every hour
        let (first, every) = f.fires;
        let fires = firing_minutes_of_day(expression);
        assert_eq!(
            fires,
            (first..24 * 60).step_by(every as usize).collect::<Vec<_>>(),
            "{}",
            f.id
        );
        let gaps: BTreeSet<u32> = fires
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain([fires[0] + 24 * 60 - fires[fires.len() - 1]])
            .collect();
        assert_eq!(gaps, BTreeSet::from([every]), "{}", f.id);
    }
}

#[test]
fn the_seconds_looking_expression_would_fire_every_third_hour() {
    // Given the expression a reader of the original script might write for "second 5"
    let wrong = "cron(5 0/3 * * ? *)";
    // When it is expanded
    let fires = firing_minutes_of_day(wrong);
    // Then it fires at minute 5 of every third hour: 8 times a day, not 480
    assert_eq!(
        fires,
        (0..24).step_by(3).map(|h| h * 60 + 5).collect::<Vec<_>>()
    );
}

#[test]
fn each_schedule_retries_delivery_within_its_period_and_keeps_what_it_cannot_deliver() {
    let t = template();
    for f in &FUNCTIONS {
        // Given the function's schedule
        let props = at(schedule_event_of(&t, f.id), &["Properties"]);
        // When its failure handling is read
        let retries = number(props, &["RetryPolicy", "MaximumRetryAttempts"]);
        let max_age = number(props, &["RetryPolicy", "MaximumEventAgeInSeconds"]);
        let dead_letters = at(props, &["DeadLetterConfig", "Arn"]);
        // Then it retries within its period (the ingest's 3-minute batch window; later, the
        // next run does the work) and sends the rest to the stack's queue
        assert!(retries >= 1, "{}", f.id);
        assert!(
            (60..=f.period_seconds()).contains(&max_age),
            "{}: {max_age} s",
            f.id
        );
        assert_eq!(get_att_resource(dead_letters), "DeadLetterQueue");
        assert_eq!(props.get("OmitName").and_then(Value::as_bool), Some(true));
    }
    assert_eq!(
        text(resource(&t, "DeadLetterQueue"), &["Type"]),
        "AWS::SQS::Queue"
    );
}

#[test]
fn each_schedule_sends_a_scheduled_event_shaped_payload() {
    let t = template();
    for f in &FUNCTIONS {
        // Given the schedule's Input (Scheduler sends only this, no envelope of its own)
        let input = sub_text(at(schedule_event_of(&t, f.id), &["Properties", "Input"]));
        // When CloudFormation renders it for an account and region, and Scheduler fills in its
        // context attributes for one invocation
        let rendered = render_sub(
            input,
            &[
                ("AWS::AccountId", "123456789012"),
                ("AWS::Region", "us-east-1"),
            ],
        );
        let payload: serde_json::Value = serde_json::from_str(&rendered).expect("Input is JSON");
        assert_eq!(payload["time"], "<aws.scheduler.scheduled-time>");
        let delivered = rendered
            .replace("<aws.scheduler.scheduled-time>", "2023-03-18T15:09:00Z")
            .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
            .replace(
                "<aws.scheduler.schedule-arn>",
                "arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl-schedule",
            );
        // Then it has the EventBridge "Scheduled Event" fields, and the handler's event type
        // reads it with the scheduled time (the compaction ignores the event; a dead letter
        // keeps the scheduled time)
        assert_eq!(payload["detail-type"], "Scheduled Event", "{}", f.id);
        assert_eq!(payload["account"], "123456789012");
        assert_eq!(payload["region"], "us-east-1");
        assert!(payload["detail"].is_object());
        let event: EventBridgeEvent =
            serde_json::from_str(&delivered).expect("the handler's event type reads the payload");
        assert_eq!(event.detail_type, "Scheduled Event");
        assert_eq!(
            event.time,
            Some(Utc.with_ymd_and_hms(2023, 3, 18, 15, 9, 0).unwrap())
        );
    }
}

#[test]
fn each_functions_failed_runs_are_retried_then_go_to_the_dead_letter_queue() {
    let t = template();
    for f in &FUNCTIONS {
        // Given the function's asynchronous invocation config (Scheduler invokes
        // asynchronously)
        let config = at(properties(&t, f.id), &["EventInvokeConfig"]);
        // When its retries, event age and destination are read
        let retries = number(config, &["MaximumRetryAttempts"]);
        let max_age = number(config, &["MaximumEventAgeInSeconds"]);
        let destination = at(config, &["DestinationConfig", "OnFailure"]);
        // Then retries are set deliberately (the ingest's one retry stays inside the batch
        // window; the compaction's two are harmless, a run is idempotent), an event is not run
        // after the next one is due, and failures land in the stack's queue
        assert_eq!(retries, f.retries, "{}", f.id);
        assert!(max_age <= f.period_seconds(), "{}: {max_age} s", f.id);
        assert_eq!(text(destination, &["Type"]), "SQS");
        assert_eq!(
            get_att_resource(at(destination, &["Destination"])),
            "DeadLetterQueue"
        );
    }
}

#[test]
fn sample_event_is_an_eventbridge_scheduled_event() {
    // Given the checked-in sample event
    let text = std::fs::read_to_string(SCHEDULED_EVENT).expect("events/scheduled-event.json");
    // When it is parsed
    let event: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    // Then it is what EventBridge sends for a schedule
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["version"], "0");
    assert_eq!(event["account"], "123456789012");
    assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(event["resources"].as_array().map(Vec::len), Some(1));
    assert_eq!(event["detail"], serde_json::json!({}));
}
