# sipmesh — see README.md. `make dev` runs a local cluster; `make test` runs the tests.
GO      ?= go
BIN     := bin/sipmesh
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short bench gobench dev proto vet fmt clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sipmesh

# The whole suite: unit, cluster and process tests (real sockets, real sipp,
# dig and named where a package needs them), with the race detector.
test:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 14m ./...

test-short:
	$(GO) test -short -count=1 ./...

# The side-by-side sipp benchmark against Kamailio (issue 8): results in
# results/bench. `make gobench` runs the Go benchmarks of every package.
bench:
	./scripts/bench/run.sh

gobench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

dev: build
	$(BIN) dev

# Regenerates the committed gRPC code (needs protoc from Debian's
# protobuf-compiler; the Go plugins are installed at pinned versions).
PROTO_DIRS := overlay/rpc/proto roles/relay/relaypb
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	for d in $(PROTO_DIRS); do \
	  PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I $$d --go_out=. --go_opt=module=github.com/sipmesh/sipmesh \
	    --go-grpc_out=. --go-grpc_opt=module=github.com/sipmesh/sipmesh $$d/*.proto || exit 1; \
	done

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin results .sipmesh-dev
