# The StepFleet image (dispatcher, worker and CLI in one binary), for docker-compose.yml.
# Needs registry access for its two base images.
FROM swift:6.0-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends librabbitmq-dev libssl-dev libsqlite3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
RUN swift build -c release --product stepfleet --static-swift-stdlib \
    && cp .build/release/stepfleet /usr/local/bin/stepfleet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends librabbitmq4 libsqlite3-0 libssl3 git tar ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/stepfleet /usr/local/bin/stepfleet
ENTRYPOINT []
CMD ["stepfleet", "--help"]
