# Release builds. "go run . serve" and "go test ./..." need none of this.
#
#   make herald    a static binary with the version from git describe
#   make image     that binary in the container image (Dockerfile)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# The Go release builds use (the go command fetches it), as in .ci/run: the
# local Go may lack standard-library fixes that govulncheck wants.
RELEASE_GO ?= go1.27.3

.PHONY: herald image

herald:
	GOTOOLCHAIN=$(RELEASE_GO) CGO_ENABLED=0 go build -ldflags "-X main.version=$(VERSION)" -o herald .

image: herald
	docker build -t herald:$(VERSION) -t herald .
