# Runs the backfill state machine's definition in moto_server, with state machine execution
# switched on through moto's /moto-api/config, and prints what the execution did as one JSON line.
#   usage: python backfill_state_machine.py ENDPOINT < {"definition", "bucket", "prefix", "keys", "timeout_s"}
import json
import sys
import time
import urllib.request

import boto3

endpoint = sys.argv[1]
given = json.load(sys.stdin)

# moto runs no state machine unless told to (its default is execute_state_machine: false).
request = urllib.request.Request(
    f"{endpoint}/moto-api/config",
    data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
urllib.request.urlopen(request, timeout=10).read()

session = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
)
s3 = session.client("s3", endpoint_url=endpoint)
sfn = session.client("stepfunctions", endpoint_url=endpoint)

s3.create_bucket(Bucket=given["bucket"])
for key in given["keys"]:
    s3.put_object(Bucket=given["bucket"], Key=key, Body=b"[]")

machine = sfn.create_state_machine(
    name="log-etl-backfill",
    definition=json.dumps(given["definition"]),
    roleArn="arn:aws:iam::123456789012:role/log-etl-backfill",
    type="STANDARD",
)
execution = sfn.start_execution(
    stateMachineArn=machine["stateMachineArn"],
    input=json.dumps({"bucket": given["bucket"], "prefix": given["prefix"]}),
)

# Bounded wait: at most timeout_s, polling every 200 ms.
deadline = time.monotonic() + given.get("timeout_s", 60)
while True:
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    if described["status"] != "RUNNING" or time.monotonic() > deadline:
        break
    time.sleep(0.2)

events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
entered = [
    e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
]
print(
    json.dumps(
        {
            "status": described["status"],
            "error": described.get("error"),
            "cause": described.get("cause"),
            "output": described.get("output"),
            "entered": entered,
            "types": [e["type"] for e in events],
        }
    )
)
