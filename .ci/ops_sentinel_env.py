"""A config.env of sentinels, for .ci/ops-checks.

    python3 .ci/ops_sentinel_env.py config.env.example OUT

Every variable config.env.example names (set or commented out) gets a value
found nowhere else, shaped so that docker/setup.sh accepts it: plain names
for roles and the database, an e-mail for pgAdmin, an https URL for the
webhook, `sentinel-<NAME>` for everything else.
"""

import re
import sys

PLAIN_NAMES = (
    "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_ADMIN_USER", "POSTGRES_MONITOR_USER", "POSTGRES_GRAFANA_USER",
)


def sentinel(name: str) -> str:
    if name == "ALERT_DISCORD_WEBHOOK_URL":
        return "https://discord.com/api/webhooks/1/sentinel-" + name
    if name in PLAIN_NAMES:
        return "sentinel_" + name.lower()
    if name == "PGADMIN_DEFAULT_EMAIL":
        return "sentinel-pgadmin@example.com"
    return "sentinel-" + name


def main() -> None:
    example, out = sys.argv[1], sys.argv[2]
    names = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", open(example).read(), re.M)
    with open(out, "w") as f:
        for name in dict.fromkeys(names):
            f.write(f"{name}={sentinel(name)}\n")


if __name__ == "__main__":
    main()
