"""YAML loading that remembers where every key came from.

We compose the node tree ourselves so that every error can point at file:line, duplicate
keys are refused instead of silently overwritten, and `${VAR}` / `${VAR:-default}` are
expanded in string scalars (`$${` writes a literal `${`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmdeploy_cli.errors import ProfileError, ProfileIssue

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class SourceMap:
    """Line numbers (1-based) of every key path in one YAML document."""

    file: str
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, loc: tuple) -> int | None:
        """The line of `loc`, else of its nearest parent that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def issue(self, loc: tuple, message: str, hint: str | None = None) -> ProfileIssue:
        return ProfileIssue(
            message, file=self.file, line=self.line_of(loc), loc=tuple(loc), hint=hint
        )


def interpolate(text: str, env: Mapping[str, str], on_missing) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            on_missing(name)
            return ""
        return value

    return _VAR.sub(sub, text)


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[object, SourceMap]:
    """Parse one YAML file into plain Python data plus its SourceMap.

    Raises ProfileError listing every duplicate key and missing variable at once.
    """
    path = Path(path)
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            [ProfileIssue(f"file not found: {path}", hint="check the path")]
        ) from None
    except IsADirectoryError:
        raise ProfileError([ProfileIssue(f"{path} is a directory, not a profile file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ProfileError([ProfileIssue(f"cannot read {path}: {reason}")]) from None
    return parse_yaml(text, str(path), env)


def parse_yaml(text: str, file: str, env: Mapping[str, str]) -> tuple[object, SourceMap]:
    smap = SourceMap(file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(
            [ProfileIssue(f"invalid YAML: {problem}", file=file, line=line)]
        ) from None
    if node is None:
        raise ProfileError([ProfileIssue("the file is empty", file=file, line=1)])
    issues: list[ProfileIssue] = []
    try:
        data = _convert(node, (), smap, env, issues)
    except yaml.YAMLError as e:  # a value no safe constructor takes (`=`, `!tag x`)
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(
            [
                ProfileIssue(
                    f"unsupported YAML value: {problem}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    hint="quote the value to make it a string",
                )
            ]
        ) from None
    if issues:
        raise ProfileError(issues)
    return data, smap


def _convert(node, loc, smap: SourceMap, env, issues):
    smap.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(smap.issue(loc, "YAML merge keys (<<) are not supported"))
                continue
            key = _scalar(key_node)
            child = loc + (key,)
            if key in out:
                issues.append(
                    ProfileIssue(
                        f"duplicate key '{key}' (first on line {smap.lines[child]})",
                        file=smap.file,
                        line=key_node.start_mark.line + 1,
                        loc=child,
                        hint="keep one of them",
                    )
                )
                continue
            smap.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, smap, env, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, loc + (i,), smap, env, issues) for i, v in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "$" in value:

        def missing(name: str) -> None:
            issues.append(
                smap.issue(
                    loc,
                    f"environment variable ${{{name}}} is not set",
                    hint=f"export {name}=... or write ${{{name}:-default}}",
                )
            )

        value = interpolate(value, env, missing)
    return value


def _scalar(node):
    """Construct one scalar with the safe loader's type rules (ints, floats, bools, null)."""
    if not isinstance(node, yaml.ScalarNode):
        return yaml.SafeLoader("").construct_object(node, deep=True)
    loader = yaml.SafeLoader("")
    return loader.construct_object(node)
