"""Python's Fernet as the judge of which tokens are valid.

  fernet_oracle.py SEED   -> JSON list of {"what", "keys", "token", "accepted", "plaintext"}:
                             tokens made with `cryptography` (at other times, in the other
                             alphabet, with whitespace, wrapped) and mutations of valid tokens,
                             each decided by `MultiFernet(keys).decrypt(token)` with no TTL.
                             "plaintext" is the base64 of what it gave, for accepted tokens.

The test feeds every case to log-etl's key ring and requires the same decision.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import time

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def judge(keys, token):
    """Python's decision: the plaintext, or None for any failure (InvalidToken or otherwise)."""
    try:
        return MultiFernet([Fernet(k) for k in keys]).decrypt(token)
    except Exception:  # noqa: BLE001 - every refusal counts, whatever its type
        return None


def signed(key, body):
    """`body` (version, timestamp, IV, ciphertext) with its HMAC under `key`, as a token."""
    signing = base64.urlsafe_b64decode(key)[:16]
    tag = hmac.new(signing, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode()


def crafted(key, plaintext, pad=True, iv=None, ts=0):
    """A token made by hand: validly signed, its ciphertext of our choosing."""
    enc = base64.urlsafe_b64decode(key)[16:]
    iv = iv or os.urandom(16)
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(enc), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return signed(key, b"\x80" + ts.to_bytes(8, "big") + iv + ciphertext)


def made_by_python(key, now, rng):
    """Valid tokens, as a real source might send them."""
    f = Fernet(key)
    payload = b"{'user_id': None, 'method': 'GET', 'inDate': '2023-03-18T15:08:02.284Z'}"
    token = f.encrypt(payload).decode()
    cases = [
        ("usual", token),
        ("an hour ahead", f.encrypt_at_time(payload, now + 3600).decode()),
        ("a minute ahead", f.encrypt_at_time(payload, now + 61).decode()),
        ("a month ahead", f.encrypt_at_time(payload, now + 30 * 86400).decode()),
        ("years back", f.encrypt_at_time(payload, now - 6 * 365 * 86400).decode()),
        ("at time zero", f.encrypt_at_time(payload, 0).decode()),
        ("at the last time", f.encrypt_at_time(payload, 2**64 - 1).decode()),
        ("empty plaintext", f.encrypt(b"").decode()),
        ("a block of plaintext", f.encrypt(b"x" * 16).decode()),
        ("a long plaintext", f.encrypt(bytes(rng.randrange(256) for _ in range(5000))).decode()),
        ("trailing newline", token + "\n"),
        ("trailing CRLF", token + "\r\n"),
        ("surrounding spaces", "  " + token + " \t"),
        ("standard alphabet", token.replace("-", "+").replace("_", "/")),
        ("mixed alphabets", token.replace("-", "+", 1).replace("_", "/", 1)),
        ("wrapped at 76", "\n".join(token[i:i + 76] for i in range(0, len(token), 76))),
        ("a space every 4", " ".join(token[i:i + 4] for i in range(0, len(token), 4))),
        ("MIME-encoded", base64.encodebytes(base64.urlsafe_b64decode(token)).decode()),
    ]
    return token, cases


def text_mutations(token, rng):
    """Changes to the token's text: truncations, padding, foreign characters."""
    stripped = token.rstrip("=")
    cases = [
        ("empty", ""),
        ("one character", token[:1]),
        ("cut by 1", token[:-1]),
        ("cut by 2", token[:-2]),
        ("cut by 3", token[:-3]),
        ("cut by 4", token[:-4]),
        ("cut in half", token[: len(token) // 2]),
        ("cut to 10", token[:10]),
        ("padding stripped", stripped),
        ("one pad too many", token + "="),
        ("four pads more", token + "===="),
        ("pad in the middle", token[:20] + "=" + token[20:]),
        ("pads in the middle", token[:22] + "==" + token[22:]),
        ("data after the padding", token + "AAAA"),
        ("a token after the padding", token + token),
        ("percent signs inside", token[:10] + "%%" + token[10:]),
        ("punctuation sprinkled", "!".join(token[i:i + 9] for i in range(0, len(token), 9))),
        ("a dot at the end", token + "."),
        ("non-ASCII inside", token[:30] + "é" + token[30:]),
        ("non-ASCII at the end", token + "\u00a0"),
        ("NUL at the end", token + "\x00"),
        ("uppercased", token.upper()),
        ("lowercased", token.lower()),
        ("reversed", token[::-1]),
    ]
    for n in range(12):
        i = rng.randrange(len(stripped))
        c = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/")
        cases.append((f"character {i} replaced", stripped[:i] + c + stripped[i + 1:] +
                      token[len(stripped):]))
    # The last character before the padding carries unused bits: setting them keeps the bytes.
    if token.endswith("="):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(stripped[-1])
        unused = 0x0F if token.endswith("==") else 0x03
        changed = alphabet[last | unused]
        cases.append(("unused trailing bits set", stripped[:-1] + changed + token[len(stripped):]))
    return cases


def byte_mutations(key, token, rng):
    """Changes to the token's bytes, written back as base64."""
    data = base64.urlsafe_b64decode(token)
    enc = lambda b: base64.urlsafe_b64encode(b).decode()  # noqa: E731
    cases = []
    for region, (lo, hi) in {"version": (0, 1), "timestamp": (1, 9), "IV": (9, 25),
                             "ciphertext": (25, len(data) - 32),
                             "HMAC": (len(data) - 32, len(data))}.items():
        for _ in range(3):
            i = rng.randrange(lo, hi)
            flipped = bytearray(data)
            flipped[i] ^= 1 << rng.randrange(8)
            cases.append((f"bit flipped in the {region} (byte {i})", enc(bytes(flipped))))
    cases += [
        ("last byte dropped", enc(data[:-1])),
        ("last block dropped", enc(data[:-16])),
        ("HMAC dropped", enc(data[:-32])),
        ("a byte added", enc(data + b"\x00")),
        ("a block added", enc(data + bytes(16))),
        ("version 0x81, resigned", signed(key, b"\x81" + data[1:-32])),
        ("version 0x00, resigned", signed(key, b"\x00" + data[1:-32])),
        ("header only, resigned", signed(key, data[:25])),
        ("ciphertext cut to 15 bytes, resigned", signed(key, data[:25 + 15])),
        ("short IV, resigned", signed(key, data[:20])),
        ("bad padding, signed", crafted(key, b"y" * 16, pad=False)),
        ("zero padding byte, signed", crafted(key, b"z" * 15 + b"\x00", pad=False)),
        ("padding of 17, signed", crafted(key, b"q" * 15 + b"\x11", pad=False)),
        ("valid, made by hand", crafted(key, b"{'a': 1}")),
        ("valid, made by hand at the far future", crafted(key, b"{}", ts=2**63)),
    ]
    return cases


def main():
    rng = random.Random(int(sys.argv[1]))
    key, other, third = (Fernet.generate_key().decode() for _ in range(3))
    now = int(time.time())
    token, made = made_by_python(key, now, rng)
    cases = [(what, [key], t) for what, t in made]
    cases += [(what, [key], t) for what, t in text_mutations(token, rng)]
    cases += [(what, [key], t) for what, t in byte_mutations(key, token, rng)]
    cases += [
        ("another key", [other], token),
        ("rotation: old key second", [other, key], token),
        ("rotation: neither key", [other, third], token),
    ]
    out = []
    for what, keys, t in cases:
        plain = judge(keys, t)
        out.append({
            "what": what,
            "keys": keys,
            "token": t,
            "accepted": plain is not None,
            "plaintext": base64.b64encode(plain).decode() if plain is not None else None,
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
