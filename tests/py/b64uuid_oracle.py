"""The original script's user_id rule, by the b64uuid package itself.

  b64uuid_oracle.py N   -> JSON list of [hex, compact] for N random SHA-256 hex digests:
                           compact = B64UUID(hex[:32]).string + B64UUID(hex[32:]).string
"""
import hashlib
import json
import os
import sys

from b64uuid import B64UUID

n = int(sys.argv[1])
pairs = []
for _ in range(n):
    hexid = hashlib.sha256(os.urandom(32)).hexdigest()
    pairs.append([hexid, B64UUID(hexid[:32]).string + B64UUID(hexid[32:]).string])
json.dump(pairs, sys.stdout)
