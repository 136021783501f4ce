"""Every code block in the README runs, so a broken example fails CI.

Each ```python block is executed against an emulator process on loopback, with the
environment the README tells users to set (`PINKCLOUDSYNC_BASE_URL`, `..._API_KEY`,
`..._API_SECRET`, as `pinkcloudsync emulator` prints them):

- a block of `>>>` lines runs statement by statement as the asyncio REPL would (top-level
  `await`), its printed results checked against the README's (`...` matches anything);
- a block defining `test_` functions is a test file, run by pytest with the plugin;
- the web-app block is served by Starlette over ASGI (its lifespan included) and asked
  for its route;
- any other block is a script, run in its own interpreter.

Blocks without a language are diagrams and commands: the command-line synopsis must
parse with the real parser, and `.ci/run` runs the install and test commands verbatim.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import EmulatorProcess

from pinkcloudsync_async.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMEOUT = 120.0
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in the README of `language`."""
    text = README.read_text()
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) == language
    ]


PYTHON_BLOCKS = blocks("python")


def kind(code: str) -> str:
    if code.lstrip().startswith(">>>"):
        return "repl"
    if re.search(r"^(async )?def test_", code, re.MULTILINE):
        return "pytest"
    if "Starlette(" in code or "FastAPI(" in code:
        return "webapp"
    return "script"


@pytest.fixture(scope="module")
def emulator_env() -> Iterator[dict[str, str]]:
    """The three variables `pinkcloudsync emulator` prints, for an emulator process."""
    process = EmulatorProcess()
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in process.stdout_lines
            if line.startswith("export ")
        )
        assert set(exports) == {
            "PINKCLOUDSYNC_BASE_URL",
            "PINKCLOUDSYNC_API_KEY",
            "PINKCLOUDSYNC_API_SECRET",
        }
        yield exports
    finally:
        process.stop()


@pytest.fixture
def environment(emulator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment set as the README says, and the same for children
    (which import this checkout of the package)."""
    for name in list(os.environ):
        if name.startswith("PINKCLOUDSYNC_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in emulator_env.items():
        monkeypatch.setenv(name, value)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def test_the_readme_has_the_blocks_this_module_knows_how_to_run() -> None:
    kinds = [kind(code) for _, code in PYTHON_BLOCKS]
    assert kinds.count("repl") == 1
    assert kinds.count("pytest") == 1
    assert kinds.count("webapp") == 1
    assert kinds.count("script") >= 4


@pytest.mark.parametrize(
    ("line", "code"), PYTHON_BLOCKS, ids=[f"line-{line}" for line, _ in PYTHON_BLOCKS]
)
def test_every_python_block_runs(
    line: int, code: str, environment: dict[str, str], tmp_path: Path
) -> None:
    runner = {"repl": _run_repl, "pytest": _run_pytest, "webapp": _run_webapp}.get(
        kind(code), _run_script
    )
    runner(code, environment, tmp_path)


def _python(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run this interpreter with `args` in `cwd`; its stdout, once it exited 0."""
    result = subprocess.run(  # noqa: S603 - our interpreter, the README's code
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _run_script(code: str, env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "block.py").write_text(code)
    _python(["block.py"], env, tmp_path)


def _run_pytest(code: str, env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "test_block.py").write_text(code)
    stdout = _python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"], env, tmp_path
    )
    tests = len(re.findall(r"^(?:async )?def test_", code, re.MULTILINE))
    passed = re.search(r"(\d+) passed", stdout)
    assert passed is not None
    assert int(passed.group(1)) >= tests  # an anyio test may run on several backends


def _run_webapp(code: str, env: dict[str, str], tmp_path: Path) -> None:
    from pinkcloudsync_async import PinkCloudSyncClient

    name = f"readme-{uuid.uuid4().hex[:8]}"
    with PinkCloudSyncClient() as api:  # a session for the app to find
        api.post("sync/sessions", json={"name": name}).raise_for_status()
    namespace: dict[str, Any] = {"__name__": "readme_webapp"}
    exec(compile(code, "README.md (web app)", "exec"), namespace)  # noqa: S102
    response = asyncio.run(_get_with_lifespan(namespace["app"], "/sessions"))
    assert response.status_code == 200, response.text
    sessions = response.json()
    assert isinstance(sessions, list)
    assert name in [session.get("name") for session in sessions]


async def _get_with_lifespan(app: Any, path: str) -> httpx.Response:
    """GET `path` from an ASGI `app` as a server would: lifespan startup, the request
    over ASGI, lifespan shutdown (httpx's ASGITransport runs no lifespan itself)."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(from_app.get(), TIMEOUT)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            return await client.get(path)
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(from_app.get(), TIMEOUT)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await asyncio.wait_for(lifespan, TIMEOUT)


def _repl_examples(code: str) -> list[tuple[str, str]]:
    """(statement, expected output) pairs of a `>>>` block."""
    examples: list[tuple[str, str]] = []
    for line in code.splitlines():
        if line.startswith(">>> "):
            examples.append((line[4:], ""))
        elif line.startswith("... ") and examples:
            source, expected = examples[-1]
            examples[-1] = (source + "\n" + line[4:], expected)
        elif line.strip() and examples:
            source, expected = examples[-1]
            examples[-1] = (source, expected + line + "\n")
    return examples


def _run_repl(code: str, env: dict[str, str], tmp_path: Path) -> None:
    checker = doctest.OutputChecker()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    # The asyncio REPL keeps one event loop for the whole session; so does this.
    with asyncio.Runner() as runner:
        try:
            for source, expected in _repl_examples(code):
                compiled = compile(source, "README.md (REPL)", "single", flags=flags)
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    result = eval(compiled, namespace)  # noqa: S307 - the README's own code
                    if inspect.iscoroutine(result):
                        runner.run(result)
                got = out.getvalue()
                assert checker.check_output(expected, got, doctest.ELLIPSIS), (
                    f">>> {source}\nexpected: {expected!r}\ngot:      {got!r}"
                )
        finally:
            client = namespace.get("client")
            if client is not None:
                runner.run(client.aclose())


def _synopsis_lines() -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for _, block in blocks("")
        for line in block.splitlines()
        if line.startswith("pinkcloudsync ")
    ]


def test_the_readme_has_a_command_line_synopsis() -> None:
    commands = {line.split()[1] for line in _synopsis_lines()}
    assert {"emulator", "token", "sessions", "request", "doctor", "demo"} <= commands


@pytest.mark.parametrize("line", _synopsis_lines())
def test_every_command_line_synopsis_parses(line: str) -> None:
    # Options in brackets are optional: the rest must be a valid command line.
    required = re.sub(r"\[[^\]]*\]", "", line)
    args = build_parser().parse_args(shlex.split(required)[1:])
    assert callable(args.handler)
