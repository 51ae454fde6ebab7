//go:build !localstack

package emulator

import (
	"context"
	"errors"
	"io"
)

// startLocalStack explains how to get the LocalStack mode: the Docker client of
// testcontainers-go is compiled only with the localstack build tag, so that the
// default build and CI (no Docker engine) do not carry it.
func startLocalStack(context.Context, io.Writer) (*Stack, error) {
	return nil, errors.New("CMS_EMULATOR=localstack needs a Docker engine and the localstack build tag: go test -tags localstack ./... (or go run -tags localstack ./local)")
}
