package app

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
)

// FromLambdaEnv builds the dependencies of a Lambda function: configuration from the environment,
// AWS credentials from the default chain (AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB are
// honoured by the SDK). It fails fast on bad configuration.
func FromLambdaEnv(ctx context.Context) (*Deps, error) {
	cfg, err := FromEnv()
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	return New(ctx, cfg, awsCfg, NewLogger(cfg.LogLevel))
}
