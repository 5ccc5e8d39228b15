# Release builds. "go run . serve" and "go test ./..." need none of this.
#
#   make herald    a static binary with the version from git describe
#   make image     that binary in the container image (Dockerfile)
#   make bench     every scenario of BENCHMARKS.md's first table, one after
#                  another (about 15 minutes, the machine otherwise idle);
#                  each run's JSON line is added to bench-results.jsonl

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# The Go release builds use (the go command fetches it), as in .ci/run: the
# local Go may lack standard-library fixes that govulncheck wants.
RELEASE_GO ?= go1.27.3

.PHONY: herald image bench

herald:
	GOTOOLCHAIN=$(RELEASE_GO) CGO_ENABLED=0 go build -ldflags "-X main.version=$(VERSION)" -o herald .

image: herald
	docker build -t herald:$(VERSION) -t herald .

# The runs of BENCHMARKS.md's first table: the bench starts its own nodes.
BENCH_RUNS = \
	"ingest -d 20s" \
	"ingest --cluster 3 -d 20s" \
	"latency --users 2000 --streams 10000 --rate 2000 -d 20s" \
	"latency --cluster 3 --users 2000 --streams 10000 --rate 2000 -d 20s" \
	"feed -d 20s" \
	"conns --users 1000 --streams 19500" \
	"conns --users 1000 --streams 19500 --transport ws" \
	"webpush -d 10s" \
	"webhook -d 10s"

bench: herald
	@for run in $(BENCH_RUNS); do \
		echo "herald bench $$run"; \
		./herald bench $$run --json > bench-run.out || exit 1; \
		tail -n 1 bench-run.out >> bench-results.jsonl; \
	done; rm -f bench-run.out
