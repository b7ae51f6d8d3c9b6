"""The deployment files in deploy/, checked against their schemas and against the code they deploy.

Nothing here builds or runs a container image. The Compose files are validated against the Compose specification
(check-jsonschema's vendored schema), the Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate,
strict), the Dockerfile by reading it. Every setting models/settings.py reads must be set in the compose file and in
the Kubernetes ConfigMap or Secret, except the few listed in LEFT_TO_DEFAULTS. The pieces that can run here do: the
worker's health check and the search-attribute command against a real Temporal dev server, the PostgreSQL init script
against PostgreSQL, the wheel build from exactly the files the Dockerfile copies.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices
from sqlalchemy.engine import make_url
from temporalio.envconfig import ClientConfigProfile
from temporalio.testing import WorkflowEnvironment

from devstack.services import SEARCH_ATTRIBUTES, free_port, temporal_binary
from models.settings import Settings
from models.temporal_client import connect_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_CLOUD = DEPLOY / "compose.temporal-cloud.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
HELM_VALUES = K8S / "temporal-values.yaml"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path != HELM_VALUES)
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("AISAFE_TEST_POSTGRES_URL")

# The Kubernetes versions the manifests must be valid for: a widely deployed one and the newest kubernetes-validate has.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]

# Settings deliberately left to their defaults in production; every other setting must be set in the deploy files.
LEFT_TO_DEFAULTS = {
    # dev mode (generated keys, the /dev/mail page) must stay off in production: it must not be set at all
    "AISAFE_DEV",
    # the alternative to AISAFE_AUDIT_KEY, which the deploy files set from their secrets
    "AISAFE_AUDIT_KEY_FILE",
}
# A setting whose value is a secret: it comes from deploy/.env (compose) or the Secret (Kubernetes), never a ConfigMap.
SECRET_SETTING = re.compile(r"secret|password|_keys?$|database_url")
# The compose services that run the aisafe image, and those that run once (every other one runs for good).
AISAFE_SERVICES = ["migrate", "worker", "web"]
ONE_SHOT_SERVICES = {"migrate", "temporal-setup"}
PLACEHOLDER = "change-me"


# --- reading the files -----------------------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def manifests(kind: str) -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml_documents(path) if doc["kind"] == kind]


def one_manifest(kind: str) -> dict[str, Any]:
    found = manifests(kind)
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def dotenv(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """NAME=value lines (quotes removed); commented-out lines are not set."""
    values = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def mentioned_in_env_example(name: str) -> bool:
    """Whether deploy/.env.example shows the variable, set or as a commented-out example."""
    return re.search(rf"^#?\s*{re.escape(name)}=", ENV_EXAMPLE.read_text(), re.MULTILINE) is not None


INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and $$, enough for these files."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            return arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return value or ""

    return INTERPOLATION.sub(replace, text)


def strings_in(node: Any) -> Iterator[str]:
    """Every string value (and mapping key) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def service_environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The environment a compose service's container gets: interpolated, and pass-through entries only when set."""
    resolved = {}
    for name, value in service.get("environment", {}).items():
        if value is None:
            if name in env:
                resolved[name] = env[name]
        else:
            resolved[name] = interpolate(str(value).lower() if isinstance(value, bool) else str(value), env)
    return resolved


def setting_env_names() -> dict[str, tuple[str, ...]]:
    """Every setting of models.settings.Settings and the environment variables that set it (any one will do)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = tuple(choice.upper() for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str) or isinstance(field.alias, str):
            choices = (str(alias or field.alias).upper(),)
        else:
            choices = (f"{prefix}{field_name}".upper(),)
        names[field_name] = choices
    return names


def required_settings() -> dict[str, tuple[str, ...]]:
    return {field: envs for field, envs in setting_env_names().items() if not set(envs) & LEFT_TO_DEFAULTS}


def secret_settings() -> set[str]:
    return {env for field, envs in required_settings().items() if SECRET_SETTING.search(field) for env in envs}


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a container with exactly this environment would read them."""
    for name in list(os.environ):
        if name.startswith(("AISAFE_", "TEMPORAL_")):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, arguments = (current + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile():
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, arguments))
    return found


def copy_sources(stage: list[tuple[str, str]]) -> list[str]:
    sources = []
    for keyword, arguments in stage:
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources += arguments.split()[:-1]
    return sources


def search_attributes_in(argv: list[str]) -> tuple[str, dict[str, str]]:
    """The namespace and {name: type} of a `temporal operator search-attribute create` command line."""
    assert argv[argv.index("operator") :][:3] == ["operator", "search-attribute", "create"], argv
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--name"]
    kinds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--type"]
    assert len(names) == len(kinds), argv
    return argv[argv.index("--namespace") + 1], dict(zip(names, kinds, strict=True))


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for manifest in manifests(kind):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


# --- schemas ---------------------------------------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CLOUD], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path: Path) -> None:
    result = check_compose(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_are_valid(path: Path, version: str) -> None:
    documents = yaml_documents(path)
    assert documents, f"{path.name} holds no manifest"
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_helm_values_extra_objects_are_valid(version: str) -> None:
    objects = yaml.safe_load(HELM_VALUES.read_text())["extraObjects"]
    assert objects
    for document in objects:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_checks_reject_broken_files(tmp_path: Path) -> None:
    """The validators above do validate: a misspelt field fails each of them."""
    broken = compose()
    broken["services"]["worker"]["deploy"] = {"replica": 2}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose(path)
    assert result.returncode != 0 and "replica" in result.stdout + result.stderr

    deployment = next(doc for doc in manifests("Deployment") if doc["metadata"]["name"] == "aisafe-web")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- every setting the code reads is set -----------------------------------------------------------------------------


def test_left_to_defaults_names_real_settings() -> None:
    known = {env for envs in setting_env_names().values() for env in envs}
    assert LEFT_TO_DEFAULTS <= known, f"no longer settings: {sorted(LEFT_TO_DEFAULTS - known)}"


@pytest.mark.parametrize("service_name", AISAFE_SERVICES)
def test_compose_sets_every_setting(service_name: str) -> None:
    environment = compose()["services"][service_name]["environment"]
    missing = [envs[0] for envs in required_settings().values() if not set(envs) & set(environment)]
    assert not missing, f"{service_name} does not set {missing} (set them, or add them to LEFT_TO_DEFAULTS with why)"
    assert not LEFT_TO_DEFAULTS & set(environment), "a setting left to its default is set"
    for name in secret_settings() & set(environment):
        value = environment[name]
        assert value is None or "${" in str(value), f"{name} is written into the compose file, not read from .env"


def test_kubernetes_sets_every_setting() -> None:
    config = one_manifest("ConfigMap")["data"]
    secret = one_manifest("Secret")["stringData"]
    assert not set(config) & set(secret), f"in both the ConfigMap and the Secret: {sorted(set(config) & set(secret))}"
    names = set(config) | set(secret)
    missing = [envs[0] for envs in required_settings().values() if not set(envs) & names]
    assert not missing, f"neither the ConfigMap nor the Secret sets {missing}"
    assert not LEFT_TO_DEFAULTS & names, "a setting left to its default is set"
    in_config = secret_settings() & set(config)
    assert not in_config, f"secrets in the ConfigMap: {sorted(in_config)}"
    for name, pod in pod_specs():
        for container in pod["containers"]:
            sources = {(next(iter(ref)), ref[next(iter(ref))]["name"]) for ref in container["envFrom"]}
            assert sources == {
                ("configMapRef", one_manifest("ConfigMap")["metadata"]["name"]),
                ("secretRef", one_manifest("Secret")["metadata"]["name"]),
            }, name


def test_the_deploy_settings_are_valid_and_placeholders_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the containers would read parses as Settings; the example keys are refused, so none can go live."""
    env = dotenv()
    for service_name in AISAFE_SERVICES:
        settings = settings_from(service_environment(compose()["services"][service_name], env), monkeypatch)
        assert not settings.dev and settings.codec
        assert settings.web_host == "0.0.0.0" and settings.sqlalchemy_url.startswith("postgresql://")
        with pytest.raises(RuntimeError):
            _ = settings.signing_key
        with pytest.raises(ValueError):
            _ = settings.codec_keys
    kubernetes = {**one_manifest("ConfigMap")["data"], **one_manifest("Secret")["stringData"]}
    settings = settings_from(kubernetes, monkeypatch)
    assert not settings.dev and settings.web_host == "0.0.0.0"
    with pytest.raises(RuntimeError):
        _ = settings.signing_key


def test_env_example_declares_what_compose_reads_and_holds_no_secret() -> None:
    env = dotenv()
    for path in (COMPOSE, COMPOSE_CLOUD):
        for match in (found for text in strings_in(compose(path)) for found in INTERPOLATION.finditer(text)):
            name, op = match.group("name"), match.group("op")
            if op in (":?", "?"):
                assert name in env or path == COMPOSE_CLOUD and mentioned_in_env_example(name), (
                    f"{path.name} requires {name}; deploy/.env.example does not set it"
                )
            elif name:
                assert mentioned_in_env_example(name), f"{path.name} reads {name}; deploy/.env.example does not show it"
        for service in compose(path)["services"].values():
            for name, value in (service.get("environment") or {}).items():
                if value is None:
                    assert mentioned_in_env_example(name), f"{name} passes through from .env but is not shown there"
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, sep, value = line.lstrip("# ").partition("=")
        if sep and re.search(r"PASSWORD|SECRET_KEYS?$|AUDIT_KEY$|CODEC_(RETIRED_)?KEYS?$|API_KEY$", name):
            assert PLACEHOLDER in value, f"{name} in deploy/.env.example must be the placeholder {PLACEHOLDER}"


def test_secret_template_holds_only_placeholders() -> None:
    for name, value in one_manifest("Secret")["stringData"].items():
        assert value == "" or PLACEHOLDER in value, f"{name} in the Secret template is not a placeholder"


# --- the compose file's shape ----------------------------------------------------------------------------------------


def test_compose_runs_the_production_shape() -> None:
    document = compose()
    services = document["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-setup"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["command"] == ["worker"] and services["web"]["command"] == ["web"]
    for name in ("worker", "web"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # only the Temporal Cloud override lets the worker and web start without the local Temporal services
    cloud = compose(COMPOSE_CLOUD)["services"]
    for name in ("temporal", "temporal-setup", "temporal-ui"):
        assert cloud[name]["profiles"], f"{name} still starts with Temporal Cloud"
    for name in ("worker", "web"):
        assert services[name]["depends_on"]["temporal-setup"].get("required", True) is True
        assert cloud[name]["depends_on"]["temporal-setup"]["required"] is False
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert service["restart"] == "no", name
        else:
            assert service["restart"] == "unless-stopped", name
            assert service["healthcheck"]["test"] and not service["healthcheck"].get("disable"), name
    # data lives in named volumes, declared at the top level
    for name, target in [("postgres", "/var/lib/postgresql/data"), ("mailpit", "/data")]:
        volume = next(v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == target)
        assert volume in document["volumes"], f"{name} keeps its data in {volume}, not a named volume"
    init = next(v for v in services["postgres"]["volumes"] if "/docker-entrypoint-initdb.d/" in v)
    assert (DEPLOY / init.split(":")[0]).resolve() == DEPLOY / "compose" / "postgres-init.sh"


def test_compose_probes_the_worker_over_http_and_keeps_metrics_unpublished() -> None:
    services = compose()["services"]
    worker = service_environment(services["worker"], dotenv())
    health_port = worker["AISAFE_WORKER_HEALTH_ADDRESS"].rpartition(":")[2]
    assert f"http://127.0.0.1:{health_port}/readyz" in " ".join(services["worker"]["healthcheck"]["test"])
    listeners = ("AISAFE_WORKER_HEALTH_ADDRESS", "AISAFE_WEB_METRICS_ADDRESS", "AISAFE_WORKER_METRICS_ADDRESS")
    internal = {worker[name].rpartition(":")[2] for name in listeners}
    for name in ("worker", "web"):
        published = {interpolate(str(port), dotenv()).rsplit(":", 1)[-1] for port in services[name].get("ports", [])}
        assert not published & internal, f"{name} publishes its metrics or health port"


def test_compose_wires_temporal_ui_to_the_codec_server() -> None:
    env = dotenv()
    services = compose()["services"]
    ui = service_environment(services["temporal-ui"], env)
    web = service_environment(services["web"], env)
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == web["AISAFE_PUBLIC_URL"].rstrip("/") + "/codec"
    assert ui["TEMPORAL_DEFAULT_NAMESPACE"] == web["TEMPORAL_NAMESPACE"]
    defaults = service_environment(services["web"], {k: v for k, v in env.items() if k != "AISAFE_UI_ORIGINS"})
    published = interpolate(services["temporal-ui"]["ports"][0], {}).rsplit(":", 2)
    assert f"http://localhost:{published[1]}" in defaults["AISAFE_UI_ORIGINS"].split(",")


def test_compose_search_attributes_are_the_codes() -> None:
    setup = compose()["services"]["temporal-setup"]
    argv = [interpolate(arg, dotenv()) for arg in setup["entrypoint"] + setup["command"]]
    namespace, attributes = search_attributes_in(argv)
    assert attributes == SEARCH_ATTRIBUTES
    assert namespace == service_environment(compose()["services"]["worker"], dotenv())["TEMPORAL_NAMESPACE"]
    temporal = service_environment(compose()["services"]["temporal"], dotenv())
    assert temporal["DEFAULT_NAMESPACE"] == namespace


async def test_compose_search_attribute_command_runs_against_temporal(dev_env: WorkflowEnvironment) -> None:
    """The admin-tools command, run by the `temporal` CLI against a real server: its flags and types are accepted."""
    setup = compose()["services"]["temporal-setup"]
    argv = [interpolate(arg, dotenv()) for arg in setup["entrypoint"] + setup["command"]]
    argv[0] = temporal_binary()
    argv[argv.index("--namespace") + 1] = dev_env.client.namespace
    address = dev_env.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, "TEMPORAL_ADDRESS": address}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    listed = await asyncio.create_subprocess_exec(
        temporal_binary(), "operator", "search-attribute", "list", "--namespace", dev_env.client.namespace,
        "--address", address, "-o", "json", stdout=subprocess.PIPE,
    )  # fmt: skip
    listing, _ = await listed.communicate()
    custom = json.loads(listing)["customAttributes"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert custom[name] == f"INDEXED_VALUE_TYPE_{re.sub(r'(?<!^)(?=[A-Z])', '_', kind).upper()}"


# --- PostgreSQL's init script ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not POSTGRES_URL or not shutil.which("psql"), reason="needs AISAFE_TEST_POSTGRES_URL and psql")
def test_postgres_init_script_makes_a_ledger_database_that_migrates(tmp_path: Path) -> None:
    """The init script as the postgres image runs it, then `aisafe db upgrade` as the migrate service runs it."""
    assert POSTGRES_URL
    server = make_url(POSTGRES_URL)
    name = f"aisafe_{uuid.uuid4().hex[:10]}"
    password = "it's a pass word"
    psql_env = {
        **os.environ,
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        **({"PGPASSWORD": server.password} if server.password else {}),
        "POSTGRES_USER": server.username or "postgres",
        "POSTGRES_DB": server.database or "postgres",
    }
    init = DEPLOY / "compose" / "postgres-init.sh"
    assert os.access(init, os.X_OK), "the postgres image runs executable init scripts in their own shell"
    try:
        result = subprocess.run(
            [str(init)],
            env={**psql_env, "AISAFE_DB_PASSWORD": password, "AISAFE_DB_USER": name, "AISAFE_DB_NAME": name},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        url = server.set(username=name, password=password, database=name).render_as_string(hide_password=False)
        upgrade = subprocess.run(
            [str(BIN / "aisafe"), "db", "upgrade", "--json"],
            env={**os.environ, "AISAFE_DATABASE_URL": url, "AISAFE_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert json.loads(upgrade.stdout)["after"]
    finally:
        subprocess.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-d", psql_env["POSTGRES_DB"], "-U", psql_env["POSTGRES_USER"],
             "-c", f'DROP DATABASE IF EXISTS "{name}"', "-c", f'DROP ROLE IF EXISTS "{name}"'],
            env=psql_env, capture_output=True, timeout=60,
        )  # fmt: skip


# --- the worker's health check ---------------------------------------------------------------------------------------


async def run_healthcheck(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DEPLOY / "worker_healthcheck.py"),
        *args,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("AISAFE_", "TEMPORAL_"))}, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_worker_healthcheck_sees_this_hosts_worker(
    dev_env: WorkflowEnvironment, tmp_path: Path, task_queue: str
) -> None:
    from models.db import init_db, make_engine
    from worker import build_worker

    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    init_db(engine)
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_env.client.namespace,
        "AISAFE_TASK_QUEUE": task_queue,
    }
    code, output = await run_healthcheck(env, "--timeout", "5")
    assert code == 1 and "no workflow-task poller" in output, output
    settings = Settings(dev=True, data_dir=tmp_path)
    async with build_worker(dev_env.client, settings, engine, task_queue=task_queue):
        for _ in range(20):  # the worker's first polls reach the server a moment after it starts
            code, output = await run_healthcheck(env, "--timeout", "5")
            if code == 0:
                break
            await asyncio.sleep(0.5)
        assert code == 0 and "healthy" in output, output
    engine.dispose()
    unreachable = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    code, output = await run_healthcheck(unreachable, "--timeout", "3")
    assert code == 1 and "cannot reach Temporal" in output, output
    code, output = await run_healthcheck(unreachable, "--timeout", "3", "--ignore-unreachable")
    assert code == 0, output


# --- the Dockerfile --------------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_non_root_user() -> None:
    build, runtime = stages()
    assert [args.split()[0] for _, args in (build[0], runtime[0])] == ["python:3.11-slim", "python:3.11-slim"]
    assert any(k == "RUN" and "pip wheel" in a for k, a in build)
    installs = [a for k, a in runtime if k == "RUN" and "pip install" in a]
    assert installs and "from=build" in installs[0] and "python -m venv" in installs[0]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]} is root or not numeric (runAsNonRoot needs a uid)"
    instructions = dict(runtime)
    assert json.loads(instructions["ENTRYPOINT"]) == ["aisafe"]
    assert json.loads(instructions["CMD"]) == ["web"]
    healthcheck = json.loads(instructions["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert healthcheck[:2] == ["python", "-c"] and "urllib" in healthcheck[2] and "/healthz" in healthcheck[2]
    for _name, pod in pod_specs():
        assert str(pod["securityContext"]["runAsUser"]) == user


def test_dockerfile_copies_the_project_and_nothing_else() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    needed = {"pyproject.toml", project["project"]["readme"], *setuptools["packages"]}
    needed |= {f"{module}.py" for module in setuptools["py-modules"]}
    build, runtime = stages()
    copied = set(copy_sources(build))
    assert copied == needed, f"missing {sorted(needed - copied)}, extra {sorted(copied - needed)}"
    for source in copied | set(copy_sources(runtime)):
        assert (ROOT / source).exists(), source
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for entry in (".git", ".venv", ".aisafe", ".pytest_cache", "deploy/.env"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
    for source in copied | set(copy_sources(runtime)):
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f".dockerignore excludes {source}"


def test_the_copied_files_build_a_complete_wheel(tmp_path: Path) -> None:
    """The build stage's wheel, from exactly the files it copies, holds every file of every package (templates,
    static files, migrations): the image installs the wheel, so what it lacks is missing in production."""
    source = tmp_path / "src"
    source.mkdir()
    build, _ = stages()
    for entry in copy_sources(build):
        path = ROOT / entry
        if path.is_dir():
            shutil.copytree(path, source / entry, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / entry)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("aisafe-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = {f"{module}.py" for module in setuptools["py-modules"]}
    for package in setuptools["packages"]:
        packaged |= {str(path.relative_to(source)) for path in (source / package).rglob("*") if path.is_file()}
    assert packaged <= inside, f"not in the wheel: {sorted(packaged - inside)}"


# --- Kubernetes ------------------------------------------------------------------------------------------------------


def test_kubernetes_pods_are_locked_down_and_sized() -> None:
    for name, pod in pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            data_dir = one_manifest("ConfigMap")["data"]["AISAFE_DATA_DIR"]
            assert {"/tmp", data_dir} <= mounts, f"{name}: /tmp and the data dir must be writable"


def test_kubernetes_probes_and_scaling() -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in manifests("Deployment")}
    web = deployments["aisafe-web"]["spec"]["template"]["spec"]["containers"][0]
    port = web["ports"][0]
    assert port["containerPort"] == int(one_manifest("ConfigMap")["data"]["AISAFE_WEB_PORT"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}, probe
    worker = deployments["aisafe-worker"]["spec"]["template"]["spec"]["containers"][0]
    worker_ports = {port["name"]: port["containerPort"] for port in worker["ports"]}
    config = one_manifest("ConfigMap")["data"]
    assert worker_ports["health"] == int(config["AISAFE_WORKER_HEALTH_ADDRESS"].rpartition(":")[2])
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert worker[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    # Prometheus scrapes each pod on the port its metrics listener binds; the Service (and so the Ingress) lacks it
    metrics_settings = {"aisafe-web": "AISAFE_WEB_METRICS_ADDRESS", "aisafe-worker": "AISAFE_WORKER_METRICS_ADDRESS"}
    for name, setting in metrics_settings.items():
        template = deployments[name]["spec"]["template"]
        ports = {port["name"]: port["containerPort"] for port in template["spec"]["containers"][0]["ports"]}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert int(annotations["prometheus.io/port"]) == ports["metrics"], name
        assert ports["metrics"] == int(config[setting].rpartition(":")[2]), name
    assert worker["args"] == ["worker"] and web["args"] == ["web"]
    assert one_manifest("Job")["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    hpa = one_manifest("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "aisafe-worker"}
    assert "replicas" not in deployments["aisafe-worker"]["spec"], "the HPA owns the worker's replica count"
    service = one_manifest("Service")
    web_labels = deployments["aisafe-web"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= web_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"], "only the pages go through the Service"
    ingress = one_manifest("Ingress")
    rule = ingress["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]
    assert f"https://{rule['host']}" == one_manifest("ConfigMap")["data"]["AISAFE_PUBLIC_URL"].rstrip("/")
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]


def test_helm_values_fit_the_manifests() -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    config = one_manifest("ConfigMap")["data"]
    persistence = values["server"]["config"]["persistence"]
    for store in ("default", "visibility"):
        assert persistence[store]["driver"] == "sql" and persistence[store]["sql"]["driver"] == "postgres12", store
    for subchart in ("cassandra", "elasticsearch", "mysql"):
        assert values[subchart]["enabled"] is False, subchart
    assert config["TEMPORAL_NAMESPACE"] in [ns["name"] for ns in values["server"]["config"]["namespaces"]["namespace"]]
    assert config["TEMPORAL_ADDRESS"].startswith("temporal-frontend.temporal.")
    ui = {item["name"]: item["value"] for item in values["web"]["additionalEnv"]}
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == config["AISAFE_PUBLIC_URL"].rstrip("/") + "/codec"
    assert ui["TEMPORAL_DEFAULT_NAMESPACE"] == config["TEMPORAL_NAMESPACE"]
    ui_host = values["web"]["ingress"]["hosts"][0]
    assert f"https://{ui_host}" in config["AISAFE_UI_ORIGINS"].split(",")
    # same site (registrable domain), so the browser sends the aisafe session cookie with the UI's codec calls
    assert ui_host.split(".")[-2:] == urlsplit(config["AISAFE_PUBLIC_URL"]).hostname.split(".")[-2:]
    job = values["extraObjects"][0]["spec"]["template"]["spec"]["containers"][0]
    namespace, attributes = search_attributes_in(job["command"])
    assert attributes == SEARCH_ATTRIBUTES and namespace == config["TEMPORAL_NAMESPACE"]


# --- Temporal Cloud --------------------------------------------------------------------------------------------------


def test_temporal_cloud_profiles_load_and_reach_the_client_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    profile_file = DEPLOY / "temporal-cloud.toml"

    def profile(name: str) -> ClientConfigProfile:
        """The profile as the file alone gives it; strict, so a misspelt key fails."""
        return ClientConfigProfile.load(name, config_source=profile_file, config_file_strict=True, disable_env=True)

    api = profile("cloud-api-key")
    assert api.address and api.address.endswith(":7233") and api.namespace and api.api_key is None
    mtls = profile("cloud-mtls")
    assert mtls.tls is not None and mtls.tls.client_cert and mtls.tls.client_private_key and mtls.api_key is None

    # as the containers use it: the file and profile named in the environment, the API key a secret beside it
    mounts = compose(COMPOSE_CLOUD)["x-temporal-cloud"]
    config_file = mounts["environment"]["TEMPORAL_CONFIG_FILE"]
    assert any(volume.split(":")[:2] == ["./temporal-cloud.toml", config_file] for volume in mounts["volumes"])
    cert_dir = next(v.split(":")[1] for v in mounts["volumes"] if v.startswith("./temporal-cloud-certs"))
    assert {Path(str(mtls.tls.client_cert)).parent, Path(str(mtls.tls.client_private_key)).parent} == {Path(cert_dir)}
    settings = settings_from(
        {"TEMPORAL_CONFIG_FILE": str(profile_file), "TEMPORAL_PROFILE": "cloud-api-key", "TEMPORAL_API_KEY": "k"},
        monkeypatch,
    )
    config = connect_config(settings)
    assert config["target_host"] == api.address and config["namespace"] == api.namespace
    assert config["api_key"] == "k" and config["tls"] is True


def test_readme_walks_through_keys_users_upgrades_and_health() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for needed in (
        "aisafe audit keygen",
        "AISAFE_SECRET_KEY",
        "AISAFE_CODEC_KEY",
        "users add",
        "--role coordinator",
        "db upgrade",
        "/healthz",
        "metrics",
        "helm install",
        "temporal-cloud.toml",
        "TEMPORAL_PROFILE",
        "TEMPORAL_API_KEY",
    ):
        assert needed in readme, needed
