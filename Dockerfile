# Herald's container image: one static binary and nothing else.
#
# The binary is built outside the image (no base image to pull, no build
# toolchain inside), from the repository root:
#
#   CGO_ENABLED=0 go build -o herald .
#   docker build -t herald .
#
# "make image" runs both. The binary must be static (CGO_ENABLED=0): the image
# has no C library. herald version shows the commit it was built from.
FROM scratch

COPY herald /herald
# The data directory, owned by the user below so that a fresh volume mounted
# here is writable (Docker copies the image's ownership into a new volume).
COPY --chown=65532:65532 configs/docker/data/ /data/

# A numeric user: scratch has no /etc/passwd to look a name up in.
USER 65532:65532

# Settings go in the environment rather than in flags so that
# "herald healthcheck" finds the node by the same ones. A node of a cluster
# also sets HERALD_RAFT_ADDR to a name the others reach it by (compose.yaml):
# the default, 127.0.0.1:8751, serves a lone node.
ENV HERALD_DATA_DIR=/data \
    HERALD_HTTP_ADDR=:8750

# 8750: REST API, web UI, /healthz, /metrics. 8751: Raft and traffic between nodes.
EXPOSE 8750 8751
VOLUME ["/data"]

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/herald", "healthcheck"]

# SIGTERM (docker stop) ends live streams with a retry hint and closes the
# stores cleanly; give it --stop-timeout 30 or more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/herald"]
CMD ["serve"]
