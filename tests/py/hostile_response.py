"""A response as a misbehaving source serves it, made by Python as such a source would.

  hostile_response.py KEY OUT TRUTH -> writes to OUT a JSON array of good elements (tokens made
      by `cryptography` from repr() payloads) mixed with elements that are not valid JSON:
      json.dumps's NaN and Infinity in envelope fields (its default, allow_nan=True), a raw
      control character, and invalid UTF-8 in `data` and in another field. Writes the good
      records' payloads (their JSON) to TRUTH, one a line, and prints the bad elements' bytes
      as a JSON list of latin-1 strings (each byte one character), in the order served.
"""
import json
import sys

from cryptography.fernet import Fernet


def record(i):
    return {
        "user_id": f"{i:064x}",
        "record_id": 1000 + i,
        "activity": "purchase",
        "url": "/api/products/product/",
        "method": "POST",
        "name": "json_logger",
        "inDate": f"2023-03-18T15:{i // 60:02d}:{i % 60:02d}.284Z",
        "detail": {"message": "POST purchase", "levelname": "INFO"},
    }


def main():
    key, out, truth = sys.argv[1], sys.argv[2], sys.argv[3]
    fernet = Fernet(key.encode())
    token = lambda r: fernet.encrypt(f"{r}".encode()).decode()
    elements, bad, good = [], [], []
    for i in range(20):
        r = record(i)
        good.append(r)
        elements.append(json.dumps({"recordId": str(i), "data": token(r), "ArrivalTimeStamp": 1.5}).encode())
    lost = [record(100 + i) for i in range(5)]
    broken = [
        json.dumps({"recordId": "n", "data": token(lost[0]), "ArrivalTimeStamp": float("nan")}).encode(),
        json.dumps({"recordId": "i", "data": token(lost[1]), "ArrivalTimeStamp": float("inf")}).encode(),
        ('{"recordId": "c\x01", "data": "%s"}' % token(lost[2])).encode(),
        b'{"recordId": "u", "data": "' + token(lost[3]).encode()[:20] + b"\xff\xfe" + b'"}',
        b'{"recordId": "\xc3\x28", "data": "' + token(lost[4]).encode() + b'"}',
    ]
    for n, element in enumerate(broken):
        elements.insert(3 + 4 * n, element)
        bad.append(element.decode("latin-1"))
    with open(out, "wb") as f:
        f.write(b"[" + b", ".join(elements) + b"]")
    with open(truth, "w") as f:
        for r in good:
            f.write(json.dumps(r) + "\n")
    json.dump(bad, sys.stdout)


main()
