"""Reference side of the interop tests: Python's own Fernet and ast.literal_eval.

  interop.py make KEY   -> JSON list of {"label", "token", "expected"}: tokens made by
                           `cryptography` from repr()/ascii() payloads, and the JSON of what
                           ast.literal_eval gives back for each plaintext.
  interop.py open KEY   -> reads a JSON list of tokens on stdin (made by log-etl), prints the
                           JSON of ast.literal_eval(decrypt(token)) for each.
"""
import ast
import json
import sys

from cryptography.fernet import Fernet


def payloads():
    usual = {
        "user_id": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
        "record_id": 98830,
        "activity": "purchase",
        "url": "/api/products/product/",
        "method": "POST",
        "name": "json_logger",
        "inDate": "2023-03-18T15:08:02.284Z",
        "detail": {"message": "POST purchase", "levelname": "INFO"},
    }
    yield "usual", f"{usual}"
    yield "none user", f"{dict(usual, user_id=None)}"
    yield "single quote", f"{dict(usual, activity=chr(39) + 'quoted' + chr(39))}"
    yield "both quotes", f"{dict(usual, activity='it' + chr(39) + 's a ' + chr(34) + 'test' + chr(34))}"
    yield "backslashes", f"{dict(usual, url='C:' + chr(92) + 'path' + chr(92) * 2)}"
    yield "control chars", f"{dict(usual, detail={'message': 'line1' + chr(10) + 'line2' + chr(9) + 'tab' + chr(13) + chr(0) + chr(127)})}"
    yield "non-ascii repr", f"{dict(usual, activity='café 😀 ' + chr(0x200b) + chr(0x85))}"
    yield "non-ascii ascii()", ascii(dict(usual, activity="café 😀 " + chr(0x200b) + chr(0xFFFF)))
    yield "nested", f"{dict(usual, detail={'a': {'b': {'c': [1, (2, 3), (4,), (), [], {}]}}, 'levelname': 'DEBUG'})}"
    yield "extra fields", f"{dict(usual, big=10**30, neg=-7, f1=1e-05, f2=1e16, f3=-0.0, f4=0.1, f5=1.5e300, t=True, fl=False)}"
    yield "other method", f"{dict(usual, method='PROPFIND', inDate='2023-03-18T15:08:02Z')}"
    yield "uppercase id", f"{dict(usual, user_id=usual['user_id'].upper())}"
    yield "empty strings", f"{dict(usual, activity='', url=chr(39), name=chr(34))}"
    yield "key quoting", "{" + repr("it's") + ": 1, " + repr('say "hi"') + ": 2}"


def main():
    mode, key = sys.argv[1], sys.argv[2]
    f = Fernet(key.encode())
    if mode == "make":
        cases = []
        for label, text in payloads():
            value = ast.literal_eval(text)
            cases.append({
                "label": label,
                "token": f.encrypt(text.encode("utf-8")).decode(),
                "expected": value,
            })
        json.dump(cases, sys.stdout, ensure_ascii=False)
    elif mode == "open":
        tokens = json.load(sys.stdin)
        out = [ast.literal_eval(f.decrypt(t.encode()).decode("utf-8")) for t in tokens]
        json.dump(out, sys.stdout, ensure_ascii=False)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
