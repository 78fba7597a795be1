"""Runtime messages in v2's terms: the runtime names a request's inputs as v1 does (inputs[i], with .key or [j] for a
part of one), which in v2 reads as the i-th tensor; here they name the tensor and the element instead."""

from __future__ import annotations

import re
from collections.abc import Sequence

V1_NAME = re.compile(r"inputs\[(?P<index>\d+)\](?:\.(?P<key>\w+)|\[(?P<position>\d+)\])?")


def in_tensor_terms(message: str, tensors: Sequence[str]) -> str:
    """`message` with its leading v1 input name (if any) as v2 names it: `inputs[0] is empty` -> `input 'text'
    element 0 is empty`. `tensors` are the request's input tensors in the model's order: a key names the tensor of
    that name (question answering's context), a position the tensor at that place (a pair's second text); without
    either, the element is that of every tensor."""
    match = V1_NAME.match(message)
    if match is None:
        return message
    key, position = match["key"], match["position"]
    names = [key] if key is not None else [tensors[int(position)]] if position is not None else list(tensors)
    subject = " and ".join(repr(name) for name in names)
    return f"input{'s' if len(names) > 1 else ''} {subject} element {match['index']}{message[match.end():]}"
