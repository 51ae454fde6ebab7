package app

import (
	"context"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// FromLambdaEnv builds the dependencies of a Lambda function: configuration from the environment,
// AWS credentials from the default chain (AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB are
// honoured by the SDK). It fails fast on bad configuration.
func FromLambdaEnv(ctx context.Context) (*Deps, error) {
	cfg, awsCfg, err := lambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg, awsCfg, NewLogger(cfg.LogLevel))
}

// lambdaEnv reads what every function reads at start: the configuration from the environment
// (FromEnv) and the AWS configuration from the default chain (AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_DYNAMODB are honoured by the SDK). It fails on bad configuration.
func lambdaEnv(ctx context.Context) (Config, aws.Config, error) {
	cfg, err := FromEnv()
	if err != nil {
		return cfg, aws.Config{}, fmt.Errorf("configuration: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return cfg, awsCfg, fmt.Errorf("aws configuration: %w", err)
	}
	return cfg, awsCfg, nil
}

// HTTPFunction builds the Lambda handler of an HTTP function (see routes.HTTPFunctions) from the
// environment: the function's routes behind aws-lambda-go-api-proxy, for lambda.Start.
func HTTPFunction(ctx context.Context, fn string) (func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	deps, err := FromLambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	h, err := deps.Handler(fn)
	if err != nil {
		return nil, err
	}
	return httpadapter.New(h).ProxyWithContext, nil
}
