"""The rules of docker-compose.yaml, for .ci/ops-checks.

    python3 .ci/ops_compose_check.py RENDERED RAW EXAMPLE SENTINEL_ENV \
        SENTINEL_RENDERED SECRETS_DIR ALERTMANAGER_YML NO_CHOWN \
        [DEMO_RENDERED DEMO_SECRETS_DIR]

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
DEMO_SECRETS_DIR    what docker/setup.sh wrote as the demo (no config.env, the
                    fake Discord found), one directory per service

Run from the repository's root (it reads docker/setup.sh, docker/demo.env,
prometheus/prometheus.yml and grafana/).

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
# The profile `demo`: the stack with the bot counting against the fake
# Discord, with no token. It adds the fake alone; setup, seeing no token and
# the fake on the internal network `demo`, hands out docker/demo.env.
DEMO_PROFILE = "demo"
DEMO_SERVICES = {"fake-discord"}
DEMO_NETWORK = "demo"
DEMO_CONFIG = "docker/demo.env"
EXPECTED_SERVICES = STACK_SERVICES | DEMO_SERVICES
# Services whose image has the HEALTHCHECK (Dockerfile, docker/fake-discord.Dockerfile).
IMAGE_HEALTHCHECK = {"bot", "fake-discord"}
FAKE_DISCORD_URL = "http://fake-discord:3000"
# Where setup finds config.env (the project's directory, mounted) and the
# demo's configuration, and the name it looks the fake up by: the defaults of
# docker/setup.sh, which docker-compose.yaml's mounts and fake-discord must match.
SETUP_PROJECT_MOUNT = "/countdown/project"
SETUP_DEFAULTS = {
    "SETUP_CONFIG": SETUP_PROJECT_MOUNT + "/config.env",
    "SETUP_DEMO_CONFIG": "/countdown/demo.env",
    "SETUP_DEMO_HOST": "fake-discord",
}

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


def env_file(path):
    """NAME -> value of a config.env-like file (comments and blanks skipped)."""
    values = {}
    for line in open(path).read().splitlines():
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            name, value = line.split("=", 1)
            values[name] = value
    return values


def networks_of(svc):
    return set(svc.get("networks") or {"default": None})


def written(secrets_dir):
    """(service, file) -> content of what setup wrote."""
    content = {}
    for service in sorted(os.listdir(secrets_dir)):
        for fname in os.listdir(os.path.join(secrets_dir, service)):
            content[(service, fname)] = open(os.path.join(secrets_dir, service, fname)).read()
    return content


def check_demo(services, rendered, demo_secrets_dir, errors):
    """What the demo relies on: setup can see the fake and nothing else, the
    bot and Alertmanager reach it, Prometheus scrapes the bot that talks to
    it, and setup's demo hands the dummy token to the bot alone."""
    setup_sh = open("docker/setup.sh").read()
    for var, default in SETUP_DEFAULTS.items():
        if f"{var}:-{default}}}" not in setup_sh:
            errors.append(f"docker/setup.sh: the default of {var} is not {default}, which docker-compose.yaml relies on")
    setup = services.get("setup", {})
    setup_mounts = {target: (source, read_only) for source, target, read_only in mounts(setup)}
    project = setup_mounts.get(SETUP_PROJECT_MOUNT)
    if not project or not project[1] or not os.path.isfile(os.path.join(project[0], "docker-compose.yaml")):
        errors.append(f"setup: does not mount the project's directory read-only at {SETUP_PROJECT_MOUNT} (its config.env)")
    demo_mount = setup_mounts.get(SETUP_DEFAULTS["SETUP_DEMO_CONFIG"])
    if not demo_mount or not demo_mount[1] or not demo_mount[0].endswith("/" + DEMO_CONFIG):
        errors.append(f"setup: does not mount {DEMO_CONFIG} read-only at {SETUP_DEFAULTS['SETUP_DEMO_CONFIG']}")

    # The network demo: internal, setup and the fake alone on it.
    on_demo = sorted(name for name, svc in services.items() if DEMO_NETWORK in networks_of(svc))
    if on_demo != ["fake-discord", "setup"]:
        errors.append(f"the network {DEMO_NETWORK} holds {on_demo}, expected setup and fake-discord alone")
    if networks_of(setup) != {DEMO_NETWORK}:
        errors.append(f"setup: networks are {sorted(networks_of(setup))}, expected {DEMO_NETWORK} alone (it reads config.env)")
    if setup.get("network_mode"):
        errors.append("setup: network_mode set; its one network is the internal demo network")
    fake = services.get("fake-discord", {})
    for client in ("bot", "alertmanager"):
        if not networks_of(services.get(client, {})) & networks_of(fake) - {DEMO_NETWORK}:
            errors.append(f"{client}: shares no network with fake-discord (besides the internal {DEMO_NETWORK}), so it cannot reach it")

    # The fake: what the bot and Alertmanager are told about it.
    command = fake.get("command") or []
    for flag, value in (("--addr", "0.0.0.0:3000"), ("--public-url", FAKE_DISCORD_URL)):
        if flag not in command or command[command.index(flag) + 1:command.index(flag) + 2] != [value]:
            errors.append(f"fake-discord: command lacks {flag} {value} ({command})")
    if "--demo-traffic" not in command:
        errors.append("fake-discord: command lacks --demo-traffic (the traffic the demo shows)")
    if fake.get("profiles") != [DEMO_PROFILE]:
        errors.append(f"fake-discord: profiles are {fake.get('profiles')}, expected ['{DEMO_PROFILE}']")
    if fake.get("volumes") or fake.get("depends_on"):
        errors.append("fake-discord: mounts nothing and waits for nothing (setup waits for it)")
    demo_env = env_file(DEMO_CONFIG)
    if demo_env.get("DISCORD_API_URL") != FAKE_DISCORD_URL:
        errors.append(f"{DEMO_CONFIG}: DISCORD_API_URL is {demo_env.get('DISCORD_API_URL')!r}, expected the fake's {FAKE_DISCORD_URL}")
    if not demo_env.get("ALERT_DISCORD_WEBHOOK_URL", "").startswith(FAKE_DISCORD_URL + "/api/webhooks/"):
        errors.append(f"{DEMO_CONFIG}: ALERT_DISCORD_WEBHOOK_URL is not a webhook of the fake ({FAKE_DISCORD_URL}/api/webhooks/...)")

    # Prometheus scrapes the service bot (which is the demo's bot), and
    # postgres-exporter the service db, on networks they share.
    prometheus_yml = yaml.safe_load(open("prometheus/prometheus.yml"))
    names = [n for job in prometheus_yml["scrape_configs"] if job["job_name"] == "countdown"
             for sd in job.get("dns_sd_configs", []) for n in sd.get("names", [])]
    if names != ["bot"]:
        errors.append(f"prometheus.yml: job countdown discovers {names}, expected the service bot")
    for a, b in (("prometheus", "bot"), ("prometheus", "postgres-exporter"), ("postgres-exporter", "db"),
                 ("grafana", "db"), ("pgadmin", "db"), ("grafana", "prometheus"), ("prometheus", "alertmanager")):
        if not networks_of(services.get(a, {})) & networks_of(services.get(b, {})):
            errors.append(f"{a} and {b} share no network")

    # setup as the demo: the demo's values, each to its owners alone; the
    # bot talks to the fake, Alertmanager posts to the fake's webhook.
    if not demo_secrets_dir:
        errors.append("no output of setup as the demo to check")
        return
    content = written(demo_secrets_dir)
    if content.get(("db", "stack_mode")) != "demo":
        errors.append("setup as the demo: db/stack_mode is not demo")
    bot_env = content.get(("bot", "config.env"), "")
    for var in ("DISCORD_TOKEN", "DISCORD_API_URL"):
        if f"\n{var}={demo_env.get(var)}\n" not in "\n" + bot_env:
            errors.append(f"setup as the demo: the bot's config.env lacks {var}={demo_env.get(var)}")
    if content.get(("alertmanager", "discord_webhook_url")) != demo_env.get("ALERT_DISCORD_WEBHOOK_URL"):
        errors.append("setup as the demo: Alertmanager's webhook is not the fake's of docker/demo.env")
    for var in SECRET_OWNERS:
        value = demo_env.get(var)
        if not value:
            errors.append(f"{DEMO_CONFIG}: {var} is not set")
            continue
        # Two variables may share a value (one password for both UIs): it
        # may reach the owners of either.
        allowed = set().union(*(SECRET_OWNERS[v] for v in SECRET_OWNERS if demo_env.get(v) == value))
        got = {service for (service, _), text in content.items() if value in text}
        if not got or not got <= allowed:
            errors.append(f"setup as the demo: {var} reaches {sorted(got)}, expected {sorted(SECRET_OWNERS[var])}")


def main() -> None:
    (rendered_path, raw_path, example_path, sentinel_env_path, sentinel_rendered_path,
     secrets_dir, alertmanager_path, no_chown) = sys.argv[1:9]
    demo_rendered_path = sys.argv[9] if len(sys.argv) > 9 else None
    demo_secrets_dir = sys.argv[10] if len(sys.argv) > 10 else None
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
            # It reads config.env: no way out (the demo network is internal;
            # check_demo says who else is on it).
            if svc.get("network_mode") != "none" and networks_of(svc) != {DEMO_NETWORK}:
                errors.append(f"{name}: a one-shot service that reads config.env has no network but the internal {DEMO_NETWORK}")
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
    # The stack starts with a plain `up`; the fake Discord only with
    # --profile demo, and the stack's services depend on nothing of it.
    demo_errors = len(errors)
    for name, svc in services.items():
        profiles = svc.get("profiles") or []
        if name in DEMO_SERVICES:
            continue
        if profiles:
            errors.append(f"{name}: has profiles {profiles}; the stack's services start with a plain `up`")
        for dep in svc.get("depends_on") or {}:
            if dep in DEMO_SERVICES:
                errors.append(f"{name}: depends on the demo's {dep}, which a plain `up` does not start")
        if environment(svc).get("POSTGRES_HOST_AUTH_METHOD") not in (None, "scram-sha-256"):
            errors.append(f"{name}: POSTGRES_HOST_AUTH_METHOD weakens the database's authentication")
    if not ((rendered.get("networks") or {}).get(DEMO_NETWORK) or {}).get("internal"):
        errors.append(f"the network {DEMO_NETWORK} is not internal: setup, which reads config.env, is on it")
    check_demo(services, rendered, demo_secrets_dir, errors)
    if demo_rendered_path:
        demo_services = (yaml.safe_load(open(demo_rendered_path)) or {}).get("services") or {}
        if set(demo_services) != EXPECTED_SERVICES:
            errors.append(f"--profile demo: services are {sorted(demo_services)}, expected {sorted(EXPECTED_SERVICES)}")
        elif demo_services != services:
            errors.append("--profile demo renders the services otherwise than a plain config")
    if len(errors) == demo_errors:
        print("  ok: profile demo: --profile demo renders and adds fake-discord alone; setup sees it on the internal"
              " network demo (nobody else there), the bot and Alertmanager reach it, Prometheus scrapes the bot;"
              " setup as the demo hands docker/demo.env out (the dummy token to the bot alone, each password to"
              " its owners, the fake as DISCORD_API_URL and as Alertmanager's webhook)")

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
    # config.env reaches setup alone, read-only: neither the file nor the
    # project's directory, where it lies, is mounted by anyone else.
    for name, svc in services.items():
        for source, _, read_only in mounts(svc):
            holds_config = os.path.basename(source) == "config.env" or (
                os.path.isdir(source) and os.path.isfile(os.path.join(source, "docker-compose.yaml"))
            )
            if holds_config and (name != "setup" or not read_only):
                errors.append(f"{name}: mounts {source} (config.env); only setup may, read-only")

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
