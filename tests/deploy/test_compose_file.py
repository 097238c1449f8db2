"""compose/docker-compose.yml as a whole: valid, complete, started in order and stopped gracefully.

The file is validated against the Compose Specification's JSON Schema (vendored in compose/schemas),
then read for what the schema cannot know: the encryption key must be given, every long-running
service has a health check, every dependency exists and its condition can be met, one-shot jobs are
waited for, services outlive their shutdown grace, and every file it mounts exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import pytest

from pm_shared.settings import CommonSettings

if TYPE_CHECKING:
    from tests.deploy.conftest import Compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA_FILE = COMPOSE_DIR / "schemas" / "compose-spec.json"


# ---------------------------------------------------------------------------------------------------
# The Compose Specification
# ---------------------------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose: Compose) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (("as written", compose.raw), ("interpolated", compose.file)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{COMPOSE_FILE.name} ({label}) breaks the Compose Specification:\n" + "\n".join(
            f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:20]
        )


def test_the_encryption_key_must_be_given_not_defaulted(compose: Compose) -> None:
    # Without PM_KEY_ENCRYPTION_KEY compose refuses the file, naming what to set.
    with pytest.raises(compose.MissingVariableError, match="PM_KEY_ENCRYPTION_KEY"):
        compose.interpolate(compose.raw, {})
    example = (COMPOSE_DIR / ".env.example").read_text()
    assert re.search(r"^PM_KEY_ENCRYPTION_KEY=", example, re.M), ".env.example must document the key"
    every_value = json.dumps(compose.raw)
    assert every_value.count("${PM_KEY_ENCRYPTION_KEY") >= 1


# ---------------------------------------------------------------------------------------------------
# What the schema cannot see
# ---------------------------------------------------------------------------------------------------


def test_every_long_running_service_has_a_health_check(compose: Compose) -> None:
    missing = []
    for name, svc in compose.services.items():
        if compose.is_one_shot(svc):
            continue
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or (isinstance(test, list) and test[0] == "NONE"):
            missing.append(name)
    assert not missing, f"services without a health check: {missing}"


def test_one_shot_jobs_are_waited_for_and_the_rest_restart(compose: Compose) -> None:
    one_shots = {name for name, svc in compose.services.items() if compose.is_one_shot(svc)}
    assert {"migrate", "tigerbeetle-format"} <= one_shots
    waited = {
        dep
        for svc in compose.services.values()
        for dep, cond in (svc.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert one_shots <= waited, f"one-shot jobs nobody waits for: {sorted(one_shots - waited)}"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_services_get_longer_to_stop_than_their_shutdown_grace(compose: Compose) -> None:
    # SIGTERM: a service finishes and acks the batch in hand within PM_SHUTDOWN_GRACE_S; compose must
    # not SIGKILL it before (its default is 10 s).
    for name, process in compose.pm_services().items():
        svc = compose.services[name]
        if compose.is_one_shot(svc) or not issubclass(process.settings_type, CommonSettings):
            continue
        grace = compose.setting(process.load(compose.environment(name)), "shutdown_grace_s")
        stop = _seconds(str(svc.get("stop_grace_period", "10s")))
        assert stop > grace, f"{name}: stop_grace_period {stop}s, PM_SHUTDOWN_GRACE_S {grace}s"


def test_every_dependency_exists_and_its_condition_can_be_met(compose: Compose) -> None:
    problems = []
    for name, svc in compose.services.items():
        deps = svc.get("depends_on") or {}
        for dep, spec in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            target = compose.services.get(dep)
            if target is None:
                problems.append(f"{name} depends on unknown service {dep!r}")
                continue
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name} waits for {dep} to be healthy, but {dep} has no health check")
            if condition == "service_completed_successfully" and not compose.is_one_shot(target):
                problems.append(f"{name} waits for {dep} to complete, but {dep} is restarted forever")
    assert not problems, "\n".join(problems)
    # No service starts before the migrations and the streams are provisioned.
    for name, process in compose.pm_services().items():
        if process.member is None or process.member.kind != "service":
            continue
        deps = compose.services[name].get("depends_on") or {}
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name


def test_migrate_job_migrates_then_provisions_the_streams(compose: Compose) -> None:
    script = compose.command(compose.services["migrate"])[2]
    steps = [step.strip() for step in script.split("&&")]
    assert steps == ["pm migrate", "pm streams --provision"]


def test_every_file_the_compose_file_mounts_exists(compose: Compose) -> None:
    for name, svc in compose.services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
