#!/usr/bin/env bash
# Regenerates the Go code of every .proto file below this folder into OUT
# (default: here). The plugins are the `tool` versions pinned in go.mod, so
# `make proto` and the freshness test produce byte-identical files.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-.}
command -v protoc >/dev/null || { echo "protoc not found: run 'apt-get install -y protobuf-compiler'" >&2; exit 1; }
# One protoc run per package folder: protoc-gen-micro refuses files of
# several Go packages in one run.
for dir in $(find . -name '*.proto' -not -path './testdata/*' -printf '%h\n' | sort -u); do
  protoc \
    --plugin=protoc-gen-go="$(go tool -n protoc-gen-go)" \
    --plugin=protoc-gen-micro="$(go tool -n protoc-gen-micro)" \
    --plugin=protoc-gen-go-grpc="$(go tool -n protoc-gen-go-grpc)" \
    --go_out=paths=source_relative:"$out" \
    --micro_out=paths=source_relative:"$out" \
    --go-grpc_out=paths=source_relative:"$out" \
    "$dir"/*.proto
done
