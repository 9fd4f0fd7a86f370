# The fake Discord (fake-discord/) as a small image, for the compose profile
# `demo`: `docker compose --profile demo up` runs the stack with its bot
# counting against this fake, with no Discord token (docker-compose.yaml).
# Its command there is `--demo-traffic`: a user asks the bot for countdowns,
# Discord fails now and then, and the log shows what the channels show and
# the alerts Alertmanager posts to the fake's webhook.
#
# A file of its own, so the bot's Dockerfile and image stay as they are (the
# classic builder would build every stage before the bot's). Its first
# stages are the bot Dockerfile's, instruction for instruction, so they share
# its cached layers; then the dependencies of fake-discord compile from the
# skeleton (docker/cargo-skeleton.sh), then its sources.
#
# Plain Dockerfile syntax, as the bot's. Build context: the repository root.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS toolchain
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

FROM toolchain AS skeleton
COPY . /context
RUN sh /context/docker/cargo-skeleton.sh /context /skeleton

FROM toolchain AS build
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked -p fake-discord --bin fake-discord

COPY fake-discord/src ./fake-discord/src
RUN touch fake-discord/src/main.rs fake-discord/src/lib.rs \
    && cargo build --release --locked -p fake-discord --bin fake-discord \
    && install -m 0755 target/release/fake-discord /usr/local/bin/fake-discord

FROM debian:${DEBIAN_RELEASE}-slim
RUN groupadd --system --gid 10002 fake-discord \
    && useradd --system --uid 10002 --gid fake-discord --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fake-discord
COPY --from=build /usr/local/bin/fake-discord /usr/local/bin/fake-discord
USER 10002:10002

# REST (/api/v10), gateway (/gateway) and control API (/_test) on one port.
EXPOSE 3000

# No curl or wget in the image: bash's /dev/tcp asks GET /api/v10/gateway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 || exit 1; printf 'GET /api/v10/gateway HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3; read -r status <&3; case $status in 'HTTP/1.1 200'*) exit 0;; *) exit 1;; esac"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fake-discord"]
CMD ["--addr", "0.0.0.0:3000"]
