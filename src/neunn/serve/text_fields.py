"""What the case store checks of a text field, said in the OpenAPI schema as JSON Schema patterns, so that a client
(or a fuzzer) knows a refused text before sending it.

    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=SOME_TEXT)

The store strips texts with Python's ``str.strip``, whose whitespace is JSON Schema's ``\\s`` (ECMA-262) plus the
information separators U+001C–U+001F and U+0085 (NEL); the patterns name those too.
"""

from __future__ import annotations

NOT_SPACE = r"[^\s\x1c-\x1f\x85]"  # a character str.strip keeps
SOME_TEXT = NOT_SPACE  # (unanchored) something besides whitespace: the stripped text is not empty
NO_SPACES = rf"^{NOT_SPACE}+$"  # a name: no whitespace anywhere
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"  # no control character (the store also refuses any other unprintable one)
SAMPLE_ID = rf"^{_PRINTABLE}*[^\s\x00-\x1f\x7f-\x9f]{_PRINTABLE}*$"  # printable, not blank
