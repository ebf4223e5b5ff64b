"""Writes a saved API response of large records, for the memory benchmarks (bench/large.py and
bench/pass_memory.py): a JSON array of elements shaped as the source sends them,
{"recordId": "...", "data": "<Fernet token>", "ArrivalTimeStamp": 1679152082.284},
each token the Python repr of a record whose `blob` field makes its plaintext PLAINTEXT_BYTES
long. The blob is text of words drawn from a small vocabulary (it compresses as log text does).

  bigresponse.py --key-file FILE --out RESPONSE.json --records N --plaintext-bytes B
                 [--start 2023-03-18T15:00:00Z] [--interval-ms 300] [--seed 1]

Prints {"records": n, "bytes": b, "largest_element": e, "largest_plaintext": p} when done.
The same arguments and key give the same plaintexts (tokens differ: Fernet draws its IV).
"""

import argparse
import datetime
import hashlib
import json
import random
import sys

from cryptography.fernet import Fernet

POOL_BYTES = 16 << 20  # the blob of each record is a slice of this text


def word_pool(rng, size):
    words = [f"{rng.choice(['get', 'put', 'load', 'scan', 'user', 'item', 'cart'])}"
             f"{rng.randrange(1 << 16):x}" for _ in range(4096)]
    text = " ".join(rng.choices(words, k=size // 5))
    while len(text) < size:
        text += " " + text
    return text[:size]


def plaintext(i, at, blob_bytes, pool, rng):
    """The repr of record `i`, its blob `blob_bytes` characters long."""
    start = rng.randrange(len(pool) - blob_bytes)
    record = {
        "user_id": hashlib.sha256(str(i).encode()).hexdigest(),
        "record_id": i,
        "method": "GET",
        "inDate": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "blob": pool[start:start + blob_bytes],
    }
    return repr(record)


def write_response(args, out):
    """Writes the array to `out`; the figures printed at the end."""
    fernet = Fernet(open(args.key_file, "rb").read().strip())
    rng = random.Random(args.seed)
    pool = word_pool(rng, max(POOL_BYTES, args.plaintext_bytes + 1))
    at = datetime.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    written, largest, largest_plain = 1, 0, 0
    out.write(b"[")
    for i in range(1, args.records + 1):
        skeleton = len(plaintext(i, at, 0, pool, rng))
        text = plaintext(i, at, max(0, args.plaintext_bytes - skeleton), pool, rng)
        token = fernet.encrypt(text.encode("ascii")).decode("ascii")
        element = json.dumps({"recordId": str(i), "data": token,
                              "ArrivalTimeStamp": round(at.timestamp(), 3)}).encode()
        out.write(element + (b",\n" if i < args.records else b""))
        written += len(element) + (2 if i < args.records else 0)
        largest, largest_plain = max(largest, len(element)), max(largest_plain, len(text))
        at += datetime.timedelta(milliseconds=args.interval_ms)
    out.write(b"]\n")
    return {"records": args.records, "bytes": written + 2, "largest_element": largest,
            "largest_plaintext": largest_plain}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--plaintext-bytes", type=int, required=True)
    parser.add_argument("--start", default="2023-03-18T15:00:00Z")
    parser.add_argument("--interval-ms", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with open(args.out, "wb") as out:
        figures = write_response(args, out)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
