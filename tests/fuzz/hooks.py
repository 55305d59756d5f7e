"""Schemathesis hooks of the fuzz test (tests/fuzz/main.rs), loaded through SCHEMATHESIS_HOOKS.

An Idempotency-Key sent again with another body is refused (422), as the document says; but
whether a key was used before is history, which no schema can state, and the fuzzer draws
short keys ("0", "A") over and over. So a valid key that already went with another body of
POST /v1/orders is swapped for a fresh valid one; invalid keys go out as drawn.
"""

import json
import re

import schemathesis

VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
first_body_of_key = {}


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/v1/orders" or case.method.upper() != "POST":
        return
    headers = case.headers or {}
    name = next((n for n in headers if n.lower() == "idempotency-key"), None)
    if name is None:
        return
    key = headers[name]
    if not isinstance(key, str) or not VALID_KEY.fullmatch(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=str)
    if first_body_of_key.setdefault(key, body) != body:
        fresh = f"fuzz-{len(first_body_of_key)}"
        first_body_of_key[fresh] = body
        headers[name] = fresh
