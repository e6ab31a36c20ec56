"""Shared fixtures: a private VMVAULT_HOME per test and a CLI runner that spawns the real
``vmvault`` command (a separate process, as a user or script would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CliRunner = Callable[..., Result]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture()
def cli(home: Path) -> CliRunner:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VMVAULT_")}
        full_env["VMVAULT_HOME"] = str(home)
        for key in ("VMVAULT_LAB_DIR", "VMVAULT_LAB_CACHE", "VMVAULT_LAB_PREFIX"):
            if key in os.environ:
                full_env[key] = os.environ[key]
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "vmvault", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run
