"""Shell blocks in README.md and docs/, and the marker that says how each is checked.

Every ```sh / ```bash / ```console block carries a marker on the line before its fence:

    <!-- check: run -->          run as written (bash -e) against the tiny model on CPU: exit 0
    <!-- check: exit N -->       run as written; only its exit status (N) is checked
    <!-- check: flags -->        needs a GPU, a download or a real engine: not run, but every
                                 `llmctl` command and flag in it must exist, and every
                                 `make` target must be in the Makefile
    <!-- check: ci -->           what CI itself runs (`make test` through .ci/run, `make demo`
                                 in tests/test_docs_commands.py): checked like `flags`
    <!-- check: workflow -->     (a ```yaml block) a GitHub Actions job: its `run:` steps are
                                 run in order, as the runner would, against the tiny model

Text after the marker word (`<!-- check: flags GPU only -->`) is a free-form reason. An
unmarked shell block fails the build, so no example can drift silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGS = ("sh", "bash", "shell", "console")
MARKER = re.compile(r"^<!--\s*check:\s*(run|exit\s+\d+|flags|ci|workflow)\b.*?-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([A-Za-z0-9_+-]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    check: str | None  # "run", "exit N", "flags", "ci" or None (unmarked)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def script(self) -> str:
        """The commands as a shell runs them: in a console block (`$ ` prompts), only the
        prompted lines; their output lines are not commands."""
        lines = self.text.splitlines()
        if any(line.startswith("$ ") for line in lines):
            return "".join(line[2:] + "\n" for line in lines if line.startswith("$ "))
        return self.text

    @property
    def expected_exit(self) -> int:
        return int(self.check.split()[1]) if self.check and self.check.startswith("exit") else 0


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path` (shell or not), with its marker."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        prev = lines[start - 1].strip() if start else ""
        mk = MARKER.match(prev)
        check = " ".join(mk.group(1).split()) if mk else None
        out.append(Block(path, start + 1, lang, "\n".join(body) + "\n", check))
    return out


def shell_blocks(root: Path) -> list[Block]:
    return [b for p in doc_files(root) for b in blocks(p) if b.lang in SHELL_LANGS]


# -- flag checking ---------------------------------------------------------------------------


def commands_in(text: str) -> list[list[str]]:
    """The simple commands of a shell block, as word lists (comments, continuations, pipes,
    `&&`, `;` and `$(...)` handled well enough for documentation)."""
    text = re.sub(r"\\\n", " ", text)
    out: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError:
            words = line.split()
        # $(...) substitutions: their inner command counts too
        for inner in re.findall(r"\$\(([^()]*)\)", line):
            try:
                out.append(shlex.split(inner, comments=True))
            except ValueError:
                pass
        cur: list[str] = []
        for w in words:
            if w in ("|", "||", "&&", ";", "&"):
                if cur:
                    out.append(cur)
                cur = []
            else:
                cur.append(w)
        if cur:
            out.append(cur)
    return out


def cli_root():
    import typer

    from llmdeploy_cli.cli.app import build_app

    return typer.main.get_command(build_app([]))


def check_llmctl(words: list[str], root) -> str | None:
    """None when `llmctl WORDS...` names commands and options that exist, else why not."""
    cmd = root
    path = ["llmctl"]
    i = 1
    while i < len(words):
        w = words[i]
        if w.startswith("-") and w != "-":
            name = w.split("=", 1)[0]
            param = next(
                (p for p in cmd.params if name in (*p.opts, *getattr(p, "secondary_opts", ()))),
                None,
            )
            if param is None and name in ("--help", "-h"):
                i += 1
                continue
            if param is None:
                return f"'{' '.join(path)}' has no option {name}"
            takes_value = not getattr(param, "is_flag", False) and not getattr(
                param, "count", False
            )
            i += 2 if takes_value and "=" not in w else 1
            continue
        sub = getattr(cmd, "commands", None)
        if sub is not None:
            if w not in sub:
                return f"'{' '.join(path)}' has no command '{w}'"
            cmd = sub[w]
            path.append(w)
        i += 1
    if getattr(cmd, "commands", None) is not None and cmd is not root:
        return f"'{' '.join(path)}' needs a command ({', '.join(sorted(cmd.commands))})"
    return None


def make_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile.read_text(), flags=re.M))


def flag_problems(block: Block, root_dir: Path) -> list[str]:
    cli = cli_root()
    targets = make_targets(root_dir / "Makefile")
    problems = []
    for words in commands_in(block.script):
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value before the command
        if not words:
            continue
        exe = Path(words[0]).name
        if exe == "llmctl":
            why = check_llmctl(words, cli)
            if why:
                problems.append(f"{block.where}: {why} ({' '.join(words)})")
        elif exe == "make":
            for t in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                if t not in targets:
                    problems.append(f"{block.where}: the Makefile has no target '{t}'")
    return problems
