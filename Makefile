# sipmesh — see README.md. `make dev` runs a local cluster; `make test` runs the tests.
GO      ?= go
BIN     := bin/sipmesh
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-short bench dev proto vet fmt clean

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

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

dev: build
	$(BIN) dev

proto:
	protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative overlay/rpc/proto/*.proto

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin results .sipmesh-dev
