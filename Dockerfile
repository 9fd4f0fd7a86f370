# The countdown bot as a small image: `docker compose up -d --build` builds it.
#
# The dependencies compile in a layer of their own, from the workspace's
# manifests, Cargo.lock and stub targets only (docker/cargo-skeleton.sh), so
# that layer stays cached until a manifest or the lock file changes; then the
# bot compiles from its sources; the runtime stage is Debian slim with the
# binary, running as an unprivileged user. No token or configuration is in
# the image (see the WORKDIR below for where it comes from in the stack).
#
# Plain Dockerfile syntax (no BuildKit-only features), so BuildKit and the
# classic builder both build it.

# The toolchain CI uses; the locked dependencies need 1.88 or newer.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS toolchain
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# --- skeleton: manifests, Cargo.lock, stub targets ----------------------------
# Every workspace member is in it (today ".", fake-discord, and any added
# later). Only its content matters to the cache of the next stage's COPY.
FROM toolchain AS skeleton
COPY . /context
RUN sh /context/docker/cargo-skeleton.sh /context /skeleton

# --- dependencies, then the bot -----------------------------------------------
FROM toolchain AS build
COPY --from=skeleton /skeleton/ ./
# Only the `countdown` binary and what it depends on: the fake Discord and the
# benchmarks are dev/test crates.
RUN cargo build --release --locked --bin countdown

# The schema's migrations (src/storage/migrations) are compiled in. The
# sources are touched so cargo rebuilds over the stub artifacts, whatever
# mtimes COPY preserved.
COPY build.rs ./
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin countdown \
    && install -m 0755 target/release/countdown /usr/local/bin/countdown

# --- runtime ------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 countdown \
    && useradd --system --uid 10001 --gid countdown --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin countdown \
    && mkdir /app
COPY --from=build /usr/local/bin/countdown /usr/local/bin/countdown

# The bot reads config.env from its working directory when there is one. In
# the stack, docker-compose.yaml sets the working directory to /run/countdown,
# where the setup service (docker/setup.sh) writes a config.env of the bot's
# own variables, and sets POSTGRES_HOST, POSTGRES_PORT and METRICS_ADDR in the
# environment; no service gets the user's config.env whole.
WORKDIR /app
USER 10001:10001

# /metrics, /healthz and /readyz (METRICS_ADDR, 0.0.0.0:8080 by default).
EXPOSE 8080

# No curl or wget in the image: bash's /dev/tcp sends the request. It probes
# the port of METRICS_ADDR (8080 when unset) on 127.0.0.1, so METRICS_ADDR must
# bind 0.0.0.0, [::] or 127.0.0.1.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/bin/bash", "-c", "port=${METRICS_ADDR##*:}; exec 3<>/dev/tcp/127.0.0.1/${port:-8080} || exit 1; printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3; read -r status <&3; case $status in 'HTTP/1.1 200'*) exit 0;; *) exit 1;; esac"]

# SIGTERM: the bot records progress and exits 0 within 5 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/countdown"]
