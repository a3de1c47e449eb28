# disco's binaries plus HAProxy and nginx, for docker-compose.yml (the native demo,
# scripts/demo.sh, is what CI runs).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p disco-agent -p discoctl -p disco-bench

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy nginx ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/disco-agent /src/target/release/discoctl /src/target/release/disco-demo-app /usr/local/bin/
COPY docker/ /etc/disco/
RUN chmod +x /etc/disco/*.sh
