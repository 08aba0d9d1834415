"""What the OpenAPI document names but JSON Schema cannot state, for schemathesis.

- `ticket-number`: 20 digits whose last is a Damm check digit (src/domain/ticket.rs).
- Uploads: a document is a real JPEG, PNG or PDF (the server reads its magic bytes,
  decodes images and scans PDFs), so uploads send the example documents.
- The stateful walk (draft -> documents -> submit -> progress) needs a draft that exists:
  a positive draft creation in that phase names an account of examples/accounts.json
  (which .ci/api-fuzz imports), as an applicant would; every other case is sent as drawn.
"""

import random
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

DAMM = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
]


def check_digit(digits):
    interim = 0
    for d in digits:
        interim = DAMM[interim][d]
    return interim


@st.composite
def ticket_numbers(draw):
    body = draw(st.lists(st.integers(0, 9), min_size=19, max_size=19))
    digits = "".join(str(d) for d in body + [check_digit(body)])
    separator = draw(st.sampled_from(["", "-", " "]))
    return separator.join(digits[i : i + 4] for i in range(0, 20, 4))


schemathesis.openapi.format("ticket-number", ticket_numbers())

DOCUMENTS = Path(__file__).resolve().parent.parent / "examples" / "documents"
schemathesis.openapi.media_type("image/jpeg", st.just((DOCUMENTS / "licence.jpg").read_bytes()))
schemathesis.openapi.media_type("image/png", st.just((DOCUMENTS / "receipt.png").read_bytes()))
schemathesis.openapi.media_type("application/pdf", st.just((DOCUMENTS / "letter.pdf").read_bytes()))

# Accounts of examples/accounts.json that may appeal through "forgot password".
ACCOUNTS = ["wangwu", "acme-ops"]
walk = random.Random(1)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    meta = case.meta
    if (
        case.operation.label == "POST /v1/drafts"
        and meta is not None
        and meta.phase.name == "stateful"
        and not meta.generation.mode.is_negative
        and isinstance(case.body, dict)
    ):
        case.body["entry_point"] = {"kind": "forgot_password", "account": walk.choice(ACCOUNTS)}
