"""pgAdmin's own code, called for .ci/pgadmin-check.

    python3 .ci/pgadmin_check.py compose COMPOSE_FILE
        (any python3 with PyYAML) prints the pgadmin service's image tag on
        the first line, then its PGADMIN_CONFIG_* settings as the image's
        entrypoint writes them into config_distro.py: `NAME = value`.

    VENV/bin/python .ci/pgadmin_check.py validate PGADMIN4_DIR < addresses
        one line per address (no blank lines): `ok <address>` or
        `refused <address>: <pgAdmin's message>`, from pgAdmin's own
        validate_email (pgadmin/utils/validation_utils.py), imported and
        called the way the image's entrypoint does on a first start: from
        pgadmin/utils, with the entrypoint's defaults when the compose file
        sets no PGADMIN_CONFIG_CHECK_EMAIL_DELIVERABILITY,
        PGADMIN_CONFIG_ALLOW_SPECIAL_EMAIL_DOMAINS or
        PGADMIN_CONFIG_GLOBALLY_DELIVERABLE (it sets none; the check asserts
        so).

    VENV/bin/python .ci/pgadmin_check.py storage PGADMIN4_DIR EMAIL FILE
        (CONFIG_DISTRO_FILE_PATH set to the throwaway config) prints the path
        pgAdmin in server mode makes of the connection parameter FILE (the
        passfile "/.pgpass") for the login EMAIL: pgAdmin's own
        get_complete_file_path, as its server manager calls it when it
        connects, with that user logged in; without checking that the file
        exists.
"""

import contextlib
import io
import os
import sys


def compose(path):
    import yaml

    service = yaml.safe_load(open(path))["services"]["pgadmin"]
    print(service["image"].rpartition(":")[2])
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    for name, value in env.items():
        if name.startswith("PGADMIN_CONFIG_"):
            print(f"{name[len('PGADMIN_CONFIG_'):]} = {value}")


def validate(pgadmin_dir):
    sys.path.insert(0, os.path.join(pgadmin_dir, "pgadmin", "utils"))
    from validation_utils import validate_email

    for address in sys.stdin.read().split("\n"):
        if not address:
            continue
        # The entrypoint's email_config when PGADMIN_CONFIG_* leave them unset.
        config = {
            "CHECK_EMAIL_DELIVERABILITY": False,
            "ALLOW_SPECIAL_EMAIL_DOMAINS": [],
            "GLOBALLY_DELIVERABLE": True,
        }
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            valid = validate_email(address, config)
        if valid:
            print(f"ok {address}")
        else:
            print(f"refused {address}: {said.getvalue().strip()}")


def storage(pgadmin_dir, email, name):
    sys.path.insert(0, pgadmin_dir)
    import builtins

    builtins.SERVER_MODE = None
    import config  # noqa: F401 (first, as setup.py does: circular imports)
    from flask_login import login_user
    from pgadmin import create_app
    from pgadmin.model import User
    from pgadmin.utils import get_complete_file_path

    app = create_app(config.APP_NAME + "-cli")
    # As pgAdmin4.py sets it for the web server (the container's gunicorn).
    app.PGADMIN_RUNTIME = False
    with app.test_request_context():
        user = User.query.filter_by(email=email).first()
        if user is None:
            sys.exit(f"pgAdmin has no login {email}")
        login_user(user)
        print(get_complete_file_path(name, validate=False))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "compose":
        compose(*args)
    elif command == "validate":
        validate(*args)
    elif command == "storage":
        storage(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
