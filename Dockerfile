# Multi-stage build of the bridge: a Rust builder, then a slim runtime.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin vcon-otel

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vcon-otel /usr/local/bin/vcon-otel
COPY config/vcon-otel.yml /etc/vcon-otel/vcon-otel.yml
USER 65534
EXPOSE 9464
ENTRYPOINT ["vcon-otel"]
CMD ["run", "--config", "/etc/vcon-otel/vcon-otel.yml", "--admin-addr", "0.0.0.0:9464"]
