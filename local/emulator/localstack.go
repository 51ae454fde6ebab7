//go:build localstack

package emulator

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/localstack"
)

// LocalStackImage is the LocalStack image started by CMS_EMULATOR=localstack;
// CMS_LOCALSTACK_IMAGE overrides it.
const LocalStackImage = "localstack/localstack:4.4"

// startLocalStack runs LocalStack in Docker through testcontainers-go. Every
// service, DynamoDB included, is served by the container's edge port.
func startLocalStack(ctx context.Context, logw io.Writer) (*Stack, error) {
	image := LocalStackImage
	if v := os.Getenv("CMS_LOCALSTACK_IMAGE"); v != "" {
		image = v
	}
	fmt.Fprintf(logw, "emulator: starting %s through testcontainers-go\n", image)
	ctr, err := localstack.Run(ctx, image, testcontainers.WithEnv(map[string]string{
		"SERVICES": "dynamodb,dynamodbstreams,sqs,s3,kinesis,events,scheduler,sts,iam,lambda",
	}))
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("localstack: %w", err)
	}
	host, err := ctr.Host(ctx)
	if err == nil {
		var port interface{ Port() string }
		port, err = ctr.MappedPort(ctx, "4566/tcp")
		if err == nil {
			url := "http://" + host + ":" + port.Port()
			fmt.Fprintf(logw, "emulator: LocalStack at %s\n", url)
			return &Stack{Mode: ModeLocalStack, DynamoDBEndpoint: url, AWSEndpoint: url, Region: region(),
				container: func() error { return testcontainers.TerminateContainer(ctr) }}, nil
		}
	}
	_ = testcontainers.TerminateContainer(ctr)
	return nil, fmt.Errorf("localstack endpoint: %w", err)
}
