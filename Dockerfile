# The rentabot image (README § The container image): one statically linked binary on an
# empty base, run as uid 65532, its state in the volume /data, configured by RENTABOT_*
# variables, listening on 0.0.0.0:8000, `rentabot health` as its health check.
#
#   docker build -t rentabot --build-arg RENTABOT_BUILD_COMMIT="$(git rev-parse --short HEAD)" .
#
# The `build` stage compiles from source. CI cannot pull the Rust image, so it builds the
# same static binary on the host and replaces that stage with a directory holding it
# (tests/image.sh): `podman build --build-context build=DIR .`, DIR/out/ laid out as
# below. The final stage is the same either way.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# The commit `rentabot --version` names (build.rs): the context holds no .git.
ARG RENTABOT_BUILD_COMMIT=
WORKDIR /src
COPY . .
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# glibc, linked statically (+crt-static), for the host's own target: --target keeps the
# flag off build scripts and proc macros, which cannot be static. The line tables go
# (a quarter of the size), the symbols stay: a backtrace still names functions.
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" \
 && install -D -m 0755 "target/$target/release/rentabot" /out/rentabot \
 && strip --strip-debug /out/rentabot \
 && install -d -m 0755 /out/data

FROM scratch
LABEL org.opencontainers.image.title="rentabot" \
      org.opencontainers.image.description="Resource-locking and reservation broker for labs" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=build /out/rentabot /usr/local/bin/rentabot
# The state: a volume owned by the service's user (a new named volume takes the owner).
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV RENTABOT_HOST=0.0.0.0 \
    RENTABOT_PORT=8000 \
    RENTABOT_PERSIST=sqlite:////data/rentabot.db
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/rentabot", "health", "--timeout", "5"]
ENTRYPOINT ["/usr/local/bin/rentabot"]
CMD ["serve"]
