"""Run a diagnostic tool and read the JSON it printed (``dcgmi diag -j``, a replay hook), within limits.

One place for the checks every tool's output goes through before its own schema is read: size
(bytes and characters), UTF-8, empty output, nesting depth, and JSON syntax, each with a message that
names what was wrong.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any


def load_tool_json(text: str | bytes, *, limit: int, error: type[ValueError], empty: str, what: str,
                   hint_truncation: bool = False) -> Any:
    """``text`` as JSON, or ``error`` with a precise reason.

    ``empty``: the message when the tool printed nothing; ``what``: the document's name in the
    nesting message (e.g. "a dcgmi document"); ``hint_truncation``: say "(truncated?)" when the
    JSON ends early.
    """
    if isinstance(text, bytes):
        if len(text) > limit:
            raise error(f"the output is {len(text)} bytes, over the {limit}-byte limit")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"the output is not UTF-8: {e}") from None
    if len(text) > limit:
        raise error(f"the output is {len(text)} characters, over the {limit} limit")
    if not text.strip():
        raise error(empty)
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"the output nests too deeply to be {what}") from None
    except ValueError as e:
        trunc = ""
        if hint_truncation and "Expecting" in str(e) and e.args and text.rstrip()[-1:] not in "}]":
            trunc = " (truncated?)"
        raise error(f"the output is not JSON{trunc}: {e}") from None


def run_tool(
    exe: str, args: list[str], *, timeout_s: float, what: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes] | None, str, int]:
    """Run a diagnostic tool, output captured: ``(process, "", finished_ms)``, or ``(None, reason,
    finished_ms)`` when it did not finish in ``timeout_s`` or could not start. ``what`` names it in the
    timeout message (e.g. "dcgmi diag")."""
    try:
        p = subprocess.run([exe, *args], capture_output=True, timeout=timeout_s, check=False, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{what} did not finish in {timeout_s:g} s", int(time.time() * 1000)
    except OSError as e:
        return None, f"cannot run {exe}: {e}", int(time.time() * 1000)
    return p, "", int(time.time() * 1000)


def stderr_tail(p: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    """The end of a finished tool's stderr, and the ``" (exit N; stderr: …)"`` suffix for an error."""
    err = p.stderr[-4000:].decode("utf-8", errors="replace")
    tail = f" (exit {p.returncode}; stderr: {err.strip()[-300:]})" if err.strip() else f" (exit {p.returncode})"
    return err, tail


def gpu_indices(gpus: Any, error: type[ValueError], max_gpus: int) -> list[int]:
    """The GPU indices a server task names, sorted and unique, or ``error``: a list of 1 to
    ``max_gpus`` integers from 0 to ``max_gpus - 1`` (never anything the agent would pass on unchecked)."""
    if not isinstance(gpus, list) or not gpus or len(gpus) > max_gpus:
        raise error(f"gpus must be a list of 1 to {max_gpus} GPU indices")
    for g in gpus:
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < max_gpus:
            raise error(f"GPU index {g!r} is not an integer from 0 to {max_gpus - 1}")
    return sorted(set(gpus))
