"""The rules of docker-compose.yaml, for .ci/ops-checks.

    python3 .ci/ops_compose_check.py RENDERED RAW EXAMPLE SENTINEL_ENV \
        SENTINEL_RENDERED SECRETS_DIR ALERTMANAGER_YML NO_CHOWN [DEMO_RENDERED]

RENDERED            `docker-compose config` with config.env.example
RAW                 docker-compose.yaml itself
EXAMPLE             config.env.example
SENTINEL_ENV        a config.env of sentinel values (.ci/ops_sentinel_env.py)
SENTINEL_RENDERED   `docker-compose config` with SENTINEL_ENV
SECRETS_DIR         what docker/setup.sh wrote from SENTINEL_ENV, one
                    directory per service
ALERTMANAGER_YML    prometheus/alertmanager/alertmanager.yml
NO_CHOWN            1 when setup ran without root (file owners not checked)
DEMO_RENDERED       `docker-compose --profile demo config` with config.env.example

Prints one `ok:` line per group of rules, or every broken rule and exits 1.
"""

import glob
import os
import re
import stat
import sys

import yaml

STACK_SERVICES = {
    "setup", "bot", "db", "pgadmin", "prometheus", "alertmanager", "postgres-exporter", "grafana",
}
# The profile `demo`: the bot counting against the fake Discord, with no token.
DEMO_PROFILE = "demo"
DEMO_SERVICES = {"fake-discord", "db-demo", "bot-demo"}
DEMO_NETWORK = "demo"
EXPECTED_SERVICES = STACK_SERVICES | DEMO_SERVICES
# Services whose image has the HEALTHCHECK (Dockerfile, docker/fake-discord.Dockerfile).
IMAGE_HEALTHCHECK = {"bot", "bot-demo", "fake-discord"}
# The only credential-looking variables docker-compose.yaml may set: the
# demo's, fixed values that are no secret (a dummy token only the fake on
# the demo's internal network sees; the role of a throwaway database).
DEMO_ENV = {
    ("bot-demo", "DISCORD_TOKEN"): "demo-token-for-the-fake-discord",
    ("bot-demo", "POSTGRES_USER"): "countdown",
    ("db-demo", "POSTGRES_USER"): "countdown",
}
FAKE_DISCORD_URL = "http://fake-discord:3000"

# Each secrets volume and the one service that mounts it (setup writes them all).
VOLUME_OWNERS = {
    "secrets-bot": "bot",
    "secrets-db": "db",
    "secrets-pgadmin": "pgadmin",
    "secrets-grafana": "grafana",
    "secrets-alertmanager": "alertmanager",
    "secrets-postgres-exporter": "postgres-exporter",
}

# Who may hold each secret of config.env.
SECRET_OWNERS = {
    "DISCORD_TOKEN": {"bot"},
    "POSTGRES_PASSWORD": {"bot", "db"},
    "POSTGRES_ADMIN_PASSWORD": {"db", "pgadmin"},
    "POSTGRES_MONITOR_PASSWORD": {"db", "postgres-exporter"},
    "POSTGRES_GRAFANA_PASSWORD": {"db", "grafana"},
    "PGADMIN_DEFAULT_PASSWORD": {"pgadmin"},
    "GF_SECURITY_ADMIN_PASSWORD": {"grafana"},
    "ALERT_DISCORD_WEBHOOK_URL": {"alertmanager"},
}

# Variables the stack reads, which config.env.example must document.
DOCUMENTED = [
    "DISCORD_TOKEN", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
    "POSTGRES_ADMIN_USER", "POSTGRES_ADMIN_PASSWORD",
    "POSTGRES_MONITOR_USER", "POSTGRES_MONITOR_PASSWORD",
    "POSTGRES_GRAFANA_USER", "POSTGRES_GRAFANA_PASSWORD",
    "PGADMIN_DEFAULT_EMAIL", "PGADMIN_DEFAULT_PASSWORD",
    "GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD", "ALERT_DISCORD_WEBHOOK_URL",
]

# A variable name that holds, or names, a credential.
SECRET_NAME = re.compile(
    r"(PASSWORD|TOKEN|SECRET|_KEY|WEBHOOK_URL|_PASS|_USER)(_FILE|__FILE)?$|^DATABASE_URL$|^DATA_SOURCE_NAME$"
)

SECRETS_MOUNT = "/run/countdown"


def mounts(svc):
    """(source, target, read_only) of every volume of a rendered service."""
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            yield parts[0], parts[1], "ro" in parts[2:]
        else:
            yield v.get("source", ""), v.get("target"), bool(v.get("read_only"))


def environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, dict):
        return env
    return dict(e.split("=", 1) if "=" in e else (e, None) for e in env)


def main() -> None:
    (rendered_path, raw_path, example_path, sentinel_env_path, sentinel_rendered_path,
     secrets_dir, alertmanager_path, no_chown) = sys.argv[1:9]
    demo_rendered_path = sys.argv[9] if len(sys.argv) > 9 else None
    rendered = yaml.safe_load(open(rendered_path))
    raw_text = open(raw_path).read()
    raw = yaml.safe_load(raw_text)
    example = open(example_path).read()
    sentinels = dict(line.split("=", 1) for line in open(sentinel_env_path).read().splitlines())
    sentinel_rendered = open(sentinel_rendered_path).read()
    alertmanager_yml = open(alertmanager_path).read()
    check_owners = no_chown != "1"
    errors = []

    services = rendered["services"]
    if set(services) != EXPECTED_SERVICES:
        errors.append(f"services are {sorted(services)}, expected {sorted(EXPECTED_SERVICES)}")

    # One-shot services: what others wait for with service_completed_successfully.
    one_shots = {
        dep
        for svc in services.values()
        for dep, spec in (svc.get("depends_on") or {}).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }
    if one_shots != {"setup"}:
        errors.append(f"one-shot services are {sorted(one_shots)}, expected ['setup']")

    # --- the stack's rules ------------------------------------------------------------
    for name, svc in services.items():
        if name in one_shots:
            # Runs at every `up` and exits: restarting it would loop.
            if svc.get("restart") != "no":
                errors.append(f'{name}: a one-shot service must have restart: "no"')
            if svc.get("network_mode") != "none":
                errors.append(f"{name}: a one-shot service that reads config.env must have no network")
            if svc.get("ports"):
                errors.append(f"{name}: a one-shot service publishes no port")
        elif svc.get("restart") not in ("unless-stopped", "always"):
            errors.append(f"{name}: no restart policy")
        if "container_name" in svc:
            errors.append(f"{name}: fixed container_name")
        # The bot's and the fake Discord's healthchecks are in their Dockerfiles.
        if name not in IMAGE_HEALTHCHECK and name not in one_shots and "healthcheck" not in svc:
            errors.append(f"{name}: no healthcheck")
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            if not str(text).startswith("127.0.0.1:"):
                errors.append(f"{name}: port {port} is not bound to 127.0.0.1")
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            errors.append(f"{name}: depends_on without conditions")
        else:
            for dep, spec in deps.items():
                if spec.get("condition") not in ("service_healthy", "service_completed_successfully"):
                    errors.append(f"{name}: depends_on {dep} is not health-gated")
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not (svc.get("mem_limit") or limits.get("memory")) or not (svc.get("cpus") or limits.get("cpus")):
            errors.append(f"{name}: no memory and CPU limit (mem_limit and cpus)")
        if "build" not in svc:
            # An exact version: major.minor at least (postgres 16.9, pgAdmin
            # 9.4 are exact releases), never a bare major or latest.
            image = svc.get("image", "")
            if not re.fullmatch(r"[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)?", image):
                errors.append(f"{name}: image {image!r} is not pinned to an exact version")
        if "env_file" in svc:
            errors.append(f"{name}: env_file hands a whole file to the service; setup gives each service its own values")

    # --- the demo profile ----------------------------------------------------------------
    # The stack starts with a plain `up`; the demo only with --profile demo,
    # on its own internal network, needing nothing of the stack nor of config.env.
    demo_errors = len(errors)
    for name, svc in services.items():
        profiles = svc.get("profiles") or []
        if name in DEMO_SERVICES:
            if profiles != [DEMO_PROFILE]:
                errors.append(f"{name}: profiles are {profiles}, expected ['{DEMO_PROFILE}']")
            networks = sorted(svc.get("networks") or {})
            if networks != [DEMO_NETWORK]:
                errors.append(f"{name}: networks are {networks}, expected ['{DEMO_NETWORK}'] alone")
            if svc.get("volumes"):
                errors.append(f"{name}: a demo service mounts nothing (no config.env, no secrets, no data)")
            for dep in svc.get("depends_on") or {}:
                if dep not in DEMO_SERVICES:
                    errors.append(f"{name}: the demo depends on {dep}, a service of the stack")
        else:
            if profiles:
                errors.append(f"{name}: has profiles {profiles}; the stack's services start with a plain `up`")
            if DEMO_NETWORK in (svc.get("networks") or {}):
                errors.append(f"{name}: is on the demo's network")
            for dep in svc.get("depends_on") or {}:
                if dep in DEMO_SERVICES:
                    errors.append(f"{name}: depends on the demo's {dep}")
        if environment(svc).get("POSTGRES_HOST_AUTH_METHOD") not in (None, "scram-sha-256") and name != "db-demo":
            errors.append(f"{name}: POSTGRES_HOST_AUTH_METHOD is the throwaway demo database's alone")
    if not ((rendered.get("networks") or {}).get(DEMO_NETWORK) or {}).get("internal"):
        errors.append(f"the network {DEMO_NETWORK} is not internal: the demo's dummy token must reach nothing but the fake")
    bot_demo_env = environment(services.get("bot-demo", {}))
    if bot_demo_env.get("DISCORD_API_URL") != FAKE_DISCORD_URL:
        errors.append(f"bot-demo: DISCORD_API_URL is {bot_demo_env.get('DISCORD_API_URL')!r}, expected {FAKE_DISCORD_URL}")
    for var in ("POSTGRES_HOST", "DATABASE_URL", "DATABASE_URL_FILE", "DISCORD_TOKEN_FILE", "POSTGRES_PASSWORD_FILE"):
        if var == "POSTGRES_HOST":
            if bot_demo_env.get(var) != "db-demo":
                errors.append(f"bot-demo: POSTGRES_HOST is {bot_demo_env.get(var)!r}, expected db-demo")
        elif var in bot_demo_env:
            errors.append(f"bot-demo: sets {var}; its database is db-demo, its token the dummy one")
    if "working_dir" in services.get("bot-demo", {}):
        errors.append("bot-demo: a working_dir could hold a config.env; the image's (/app) holds none")
    command = services.get("fake-discord", {}).get("command") or []
    for flag, value in (("--addr", "0.0.0.0:3000"), ("--public-url", FAKE_DISCORD_URL)):
        if flag not in command or command[command.index(flag) + 1:command.index(flag) + 2] != [value]:
            errors.append(f"fake-discord: command lacks {flag} {value} ({command})")
    if "--demo-traffic" not in command:
        errors.append("fake-discord: command lacks --demo-traffic (the traffic the demo shows)")
    if demo_rendered_path:
        demo_services = (yaml.safe_load(open(demo_rendered_path)) or {}).get("services") or {}
        if set(demo_services) != EXPECTED_SERVICES:
            errors.append(f"--profile demo: services are {sorted(demo_services)}, expected {sorted(EXPECTED_SERVICES)}")
        elif demo_services != services:
            errors.append("--profile demo renders the services otherwise than a plain config")
    if len(errors) == demo_errors:
        print("  ok: profile demo (fake-discord, db-demo, bot-demo): --profile demo renders; its own internal"
              " network, no volume, no dependency on the stack, the bot on the fake with a dummy token")

    # The comments speak of Compose v2 and say how to update the pins.
    for lineno, line in enumerate(raw_text.splitlines(), 1):
        if re.search(r"docker-compose(?![.\w])", line):
            errors.append(f"docker-compose.yaml:{lineno}: says docker-compose; the stack runs with `docker compose` (v2)")
    if "docker compose pull" not in raw_text:
        errors.append("docker-compose.yaml does not say how to update the pinned images (docker compose pull)")
    if not errors:
        print("  ok: compose rules (127.0.0.1 ports, restart policies, health-gated depends_on,"
              " exact image versions, memory and CPU limits, `docker compose` v2 in the comments)")

    # --- credentials ----------------------------------------------------------------------
    before = len(errors)
    # config.env reaches setup alone, read-only.
    for name, svc in services.items():
        for source, _, read_only in mounts(svc):
            if os.path.basename(source) == "config.env" and (name != "setup" or not read_only):
                errors.append(f"{name}: mounts config.env; only setup may, read-only")

    # Each secrets volume: written by setup, mounted read-only by its owner alone.
    secret_volumes = {v for v in (rendered.get("volumes") or {}) if v.startswith("secrets-")}
    if secret_volumes != set(VOLUME_OWNERS):
        errors.append(f"secrets volumes are {sorted(secret_volumes)}, expected {sorted(VOLUME_OWNERS)}")
    for name, svc in services.items():
        for source, target, read_only in mounts(svc):
            owner = VOLUME_OWNERS.get(source)
            if owner is None:
                continue
            if name == "setup":
                if target != f"/secrets/{owner}":
                    errors.append(f"setup: mounts {source} at {target}, expected /secrets/{owner}")
            elif name != owner:
                errors.append(f"{name}: mounts {source}, which is {owner}'s alone")
            elif not read_only or target != SECRETS_MOUNT:
                errors.append(f"{name}: its secrets must be mounted read-only at {SECRETS_MOUNT}")
    for volume, owner in VOLUME_OWNERS.items():
        if not any(source == volume for source, _, _ in mounts(services.get(owner, {}))):
            errors.append(f"{owner}: does not mount {volume}")

    # No credential in the compose file: a credential-looking variable only
    # names a file of /run/countdown, and that file is one setup writes.
    for name, svc in raw["services"].items():
        for key, value in environment(svc).items():
            if (name, key) in DEMO_ENV:
                if value != DEMO_ENV[(name, key)]:
                    errors.append(f"{name}: {key} must be the demo's fixed {DEMO_ENV[(name, key)]!r}")
                continue
            if SECRET_NAME.search(key) and not (key.endswith("_FILE") and str(value).startswith(SECRETS_MOUNT + "/")):
                errors.append(f"{name}: {key} set in docker-compose.yaml; credentials come from setup's files ({SECRETS_MOUNT})")
            if isinstance(value, str) and value.startswith(SECRETS_MOUNT + "/"):
                if not os.path.isfile(os.path.join(secrets_dir, name, value[len(SECRETS_MOUNT) + 1:])):
                    errors.append(f"{name}: {key}={value} names a file setup does not write for {name}")
    webhook_file = re.search(r"webhook_url_file: (\S+)", alertmanager_yml)
    if not webhook_file or not os.path.isfile(
        os.path.join(secrets_dir, "alertmanager", webhook_file.group(1)[len(SECRETS_MOUNT) + 1:])
    ):
        errors.append("alertmanager.yml's webhook_url_file is not a file setup writes for alertmanager")
    # Grafana's provisioning reads files of its secrets volume with
    # $__file{...}: each must be one setup writes for grafana.
    for path in sorted(glob.glob("grafana/provisioning/**/*.yml", recursive=True)):
        for name in re.findall(r"\$__file\{([^}]*)\}", open(path).read()):
            if not name.startswith(SECRETS_MOUNT + "/") or not os.path.isfile(
                os.path.join(secrets_dir, "grafana", name[len(SECRETS_MOUNT) + 1:])
            ):
                errors.append(f"{path}: $__file{{{name}}} is not a file setup writes for grafana")
    if re.search(r"\$\{?[A-Za-z_]", raw_text.replace("$$", "")):
        errors.append("docker-compose.yaml interpolates a variable: values come from config.env through setup")
    for var, value in sentinels.items():
        if value in sentinel_rendered:
            errors.append(f"the rendered compose file holds the value of {var}")

    # Who got which secret: exactly its owners; every other variable the bot
    # alone (or nobody).
    content = {}
    for service in sorted(os.listdir(secrets_dir)):
        uid = str(services["setup"]["environment"].get("SETUP_UID_" + service.upper().replace("-", "_")))
        for fname in os.listdir(os.path.join(secrets_dir, service)):
            path = os.path.join(secrets_dir, service, fname)
            content[(service, fname)] = open(path).read()
            st = os.stat(path)
            if stat.S_IMODE(st.st_mode) != 0o400:
                errors.append(f"setup wrote {service}/{fname} with mode {oct(stat.S_IMODE(st.st_mode))}, not 0400")
            if check_owners and str(st.st_uid) != uid:
                errors.append(f"setup wrote {service}/{fname} for uid {st.st_uid}, not {service}'s {uid}")
    for var, value in sentinels.items():
        got = {service for (service, _), text in content.items() if value in text}
        if var in SECRET_OWNERS:
            if got != SECRET_OWNERS[var]:
                errors.append(f"{var} reaches {sorted(got)}, expected {sorted(SECRET_OWNERS[var])}")
        elif not (var.startswith(("POSTGRES_", "GF_", "PGADMIN_"))) and got - {"bot"}:
            errors.append(f"{var} reaches {sorted(got - {'bot'})}, not only the bot")
    if "DISCORD_TOKEN" in sentinels and not any(
        sentinels["DISCORD_TOKEN"] in text for (service, _), text in content.items() if service == "bot"
    ):
        errors.append("the bot does not get DISCORD_TOKEN")
    if len(errors) == before:
        owners = "owned by each service's uid" if check_owners else "owners not checked: not root"
        print("  ok: no credential in the compose file nor interpolated into it; config.env reaches setup alone")
        print(f"  ok: setup hands DISCORD_TOKEN to the bot alone and each secret to its owners alone (files 0400, {owners})")

    # config.env.example documents every variable the stack reads.
    for var in DOCUMENTED:
        if not re.search(rf"^#?{var}=", example, re.M):
            errors.append(f"config.env.example lacks {var}")
    if not re.search(r"^ALERT_DISCORD_WEBHOOK_URL=$", example, re.M):
        errors.append("config.env.example: ALERT_DISCORD_WEBHOOK_URL must be empty by default")

    if errors:
        print("\n".join("  FAILED: " + e for e in errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
