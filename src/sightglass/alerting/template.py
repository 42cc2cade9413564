"""Alert label/annotation templates: the part of Prometheus' Go text/template language rules use.

Supported (as Prometheus renders them): ``{{ $labels.name }}``, ``{{ $value }}``, ``{{ $externalLabels.x }}``,
``{{ .Labels.x }}``, ``{{ .Value }}``, ``{{ index $labels "name" }}``, pipes (``{{ $value | humanize }}``),
``printf``, ``humanize``, ``humanize1024``, ``humanizePercentage``, ``humanizeDuration``, ``toUpper``,
``toLower``, ``title``, trim markers ``{{-``/``-}}`` and comments ``{{/* */}}``. A missing label renders
as ``<no value>``, a float as Go prints it (``1e+06``). Anything else (``if``, ``range``...) is a
:class:`TemplateError` at load time, so ``sightglass rules check`` reports it instead of rendering wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEMPLATE_CHARS = 64 * 1024

_ACTION_RE = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<pipe>\|)
      | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|\$)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)


class TemplateError(ValueError):
    """A template uses syntax or a function this renderer does not support, or is malformed."""


@dataclass(frozen=True, slots=True)
class _Operand:
    kind: str  # str | num | var | field | ident
    text: str


_Command = list[_Operand]
_Pipeline = list[_Command]
_Part = str | _Pipeline


def go_float(v: float) -> str:
    """A float as Go's ``%v`` prints it: the shortest digits, an exponent when exp < -4 or exp >= 6."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    r = repr(abs(v))
    mant, _, e = r.partition("e")
    digits = mant.replace(".", "").lstrip("0")
    if e:
        exp = int(e)
        point = mant.index(".") if "." in mant else len(mant)
        exp += point - 1
    else:
        ip, _, fp = mant.partition(".")
        if ip != "0":
            exp = len(ip.lstrip("0")) - 1
        else:
            exp = -(len(fp) - len(fp.lstrip("0"))) - 1
    digits = digits.rstrip("0") or "0"
    sign = "-" if v < 0 else ""
    if exp < -4 or exp >= 6:  # strconv 'g' with the shortest precision decides with 6
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp >= len(digits) - 1:
        return sign + digits + "0" * (exp - len(digits) + 1)
    if exp >= 0:
        return sign + digits[: exp + 1] + "." + digits[exp + 1 :]
    return sign + "0." + "0" * (-exp - 1) + digits


def _g4(v: float) -> str:
    return format(v, ".4g")


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return _g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize1024(v: float) -> str:
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g4(v) + prefix


def humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return "0s"
    if abs(v) < 1:
        prefix = ""
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
        return f"{_g4(v)}{prefix}s"
    sign = "-" if v < 0 else ""
    v = abs(v)
    days, rem = divmod(int(v), 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    secs = seconds + (v - int(v))
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {int(secs)}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {int(secs)}s"
    if minutes:
        return f"{sign}{minutes}m {int(secs)}s"
    return f"{sign}{secs:.4g}s"


def _num(x: Any) -> float:
    if isinstance(x, bool):
        raise TemplateError("expected a number, got a boolean")
    if isinstance(x, int | float):
        return float(x)
    try:
        return float(str(x))
    except ValueError:
        raise TemplateError(f"cannot convert {x!r} to a number") from None


def _printf(fmt: Any, *args: Any) -> str:
    """Go's printf for the verbs alert templates use: %s %d %f %.Nf %g %v %q %%."""
    out: list[str] = []
    fmt = str(fmt)
    it = iter(args)
    i = 0
    spec_re = re.compile(r"%([-+ 0#]*)(\d+)?(?:\.(\d+))?([sdfgveEqx%])")
    while i < len(fmt):
        m = spec_re.match(fmt, i) if fmt[i] == "%" else None
        if m is None:
            out.append(fmt[i])
            i += 1
            continue
        i = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        try:
            a = next(it)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        pyfmt = f"%{flags}{width or ''}{'.' + prec if prec is not None else ''}"
        if verb in "fgeE":
            out.append((pyfmt + verb) % _num(a))
        elif verb == "d":
            out.append((pyfmt + "d") % int(_num(a)))
        elif verb == "x":
            out.append((pyfmt + "x") % int(_num(a)))
        elif verb == "q":
            out.append('"' + str(a).replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            s = go_float(a) if isinstance(a, float) else _str(a)
            out.append((pyfmt + "s") % s)
    rest = list(it)
    if rest:
        out.append("%!(EXTRA " + ", ".join(_str(r) for r in rest) + ")")
    return "".join(out)


def _index(m: Any, key: Any) -> Any:
    if not isinstance(m, Mapping):
        raise TemplateError("index of a non-map value")
    return m.get(str(key), None)


_FUNCS: dict[str, Callable[..., Any]] = {
    "humanize": lambda v: humanize(_num(v)),
    "humanize1024": lambda v: humanize1024(_num(v)),
    "humanizePercentage": lambda v: _g4(_num(v) * 100) + "%",
    "humanizeDuration": lambda v: humanize_duration(_num(v)),
    "printf": _printf,
    "index": _index,
    "toUpper": lambda s: _str(s).upper(),
    "toLower": lambda s: _str(s).lower(),
    "title": lambda s: _str(s).title(),
}


def _str(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{_str(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _parse_action(body: str) -> _Pipeline | None:
    s = body.strip()
    if s.startswith("/*"):
        if not s.endswith("*/"):
            raise TemplateError("unclosed comment")
        return None
    pipeline: _Pipeline = [[]]
    pos = 0
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"unexpected {s[pos : pos + 10]!r} in {{{{{body}}}}}")
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "pipe":
            if not pipeline[-1]:
                raise TemplateError(f"missing command before '|' in {{{{{body}}}}}")
            pipeline.append([])
            continue
        pipeline[-1].append(_Operand(kind, text))
        while pos < len(s) and s[pos].isspace():
            pos += 1
    if not pipeline[-1]:
        raise TemplateError(f"empty command in {{{{{body}}}}}")
    for ci, cmd in enumerate(pipeline):
        head = cmd[0]
        if head.kind == "ident":
            if head.text in ("if", "else", "end", "range", "with", "define", "template", "block", "define"):
                raise TemplateError(f"'{head.text}' actions are not supported")
            if head.text not in _FUNCS:
                raise TemplateError(f'function "{head.text}" not defined')
        elif len(cmd) > 1:
            raise TemplateError(f"{head.text} is not a function and cannot take arguments")
        elif ci > 0:
            raise TemplateError(f"only functions can follow '|', got {head.text}")
        for op in cmd[1:]:
            if op.kind == "ident":
                raise TemplateError(f"functions cannot be arguments ({op.text}); use a pipe")
        for op in cmd:
            if op.kind == "var":
                root = op.text.split(".")[0]
                if root not in ("$labels", "$value", "$externalLabels", "$externalURL", "$"):
                    raise TemplateError(f"undefined variable {root}")
            if op.kind == "field" and op.text != ".":
                root = op.text.split(".")[1]
                if root not in ("Labels", "Value", "ExternalLabels", "ExternalURL"):
                    raise TemplateError(f"can't evaluate field {root}")
    return pipeline


def parse_template(text: str) -> list[_Part]:
    """Split into literal text and parsed actions; raises :class:`TemplateError`."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is {len(text)} characters, over the {MAX_TEMPLATE_CHARS} limit")
    parts: list[_Part] = []
    pos = 0
    for m in _ACTION_RE.finditer(text):
        lit = text[pos : m.start()]
        if m.group(1):
            lit = lit.rstrip()
        if lit:
            if parts and isinstance(parts[-1], str):
                parts[-1] += lit
            else:
                parts.append(lit)
        action = _parse_action(m.group(2))
        if action is not None:
            parts.append(action)
        pos = m.end()
        if m.group(3):
            while pos < len(text) and text[pos].isspace():
                pos += 1
    tail = text[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action ('{{' without '}}')")
    if tail:
        parts.append(tail)
    return parts


@dataclass(slots=True)
class TemplateData:
    labels: Mapping[str, str]
    value: float
    external_labels: Mapping[str, str]
    external_url: str = ""


def _operand(op: _Operand, data: TemplateData) -> Any:
    if op.kind == "str":
        t = op.text
        if t.startswith("`"):
            return t[1:-1]
        return bytes(t[1:-1], "utf-8").decode("unicode_escape")
    if op.kind == "num":
        return float(op.text) if any(c in op.text for c in ".eE") else int(op.text)
    path = op.text.split(".")
    if op.kind == "var":
        root = path[0]
        base: Any = {
            "$labels": data.labels,
            "$value": data.value,
            "$externalLabels": data.external_labels,
            "$externalURL": data.external_url,
            "$": {"Labels": data.labels, "Value": data.value, "ExternalLabels": data.external_labels},
        }[root]
        rest = path[1:]
    else:
        base = {
            "Labels": data.labels,
            "Value": data.value,
            "ExternalLabels": data.external_labels,
            "ExternalURL": data.external_url,
        }
        rest = [p for p in path[1:] if p]
    for key in rest:
        if not isinstance(base, Mapping):
            raise TemplateError(f"can't evaluate field {key} of a non-map")
        base = base.get(key)
    return base


def render(parts: list[_Part], data: TemplateData) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
            continue
        val: Any = None
        for ci, cmd in enumerate(p):
            if cmd[0].kind == "ident":
                args = [_operand(o, data) for o in cmd[1:]]
                if ci > 0:
                    args.append(val)
                try:
                    val = _FUNCS[cmd[0].text](*args)
                except TypeError as e:
                    raise TemplateError(f"{cmd[0].text}: wrong number of arguments ({e})") from None
            else:
                val = _operand(cmd[0], data)
        out.append(_str(val))
    return "".join(out)


def expand(text: str, data: TemplateData) -> str:
    """Render one template; on a render error, the error text (as Prometheus does), never an exception."""
    try:
        return render(parse_template(text), data)
    except TemplateError as e:
        return f"<error expanding template: {e}>"
