package app

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/channelbilling/cms/shared/publisher"
)

// NewPublisher returns the outbox publisher: the table's stream batches to the bus
// cfg.EventBus, through an EventBridge client made from awsCfg (optFns apply to that client).
// It needs neither the table nor the secrets: the stream carries everything it publishes.
func NewPublisher(cfg Config, awsCfg aws.Config, log *slog.Logger, optFns ...func(*eventbridge.Options)) *publisher.Publisher {
	return publisher.New(eventbridge.NewFromConfig(awsCfg, optFns...), cfg.EventBus, log)
}

// PublisherFromLambdaEnv builds the publisher function's handler: configuration from the
// environment, AWS credentials from the default chain. It fails fast on bad configuration.
func PublisherFromLambdaEnv(ctx context.Context) (*publisher.Publisher, error) {
	cfg, awsCfg, err := lambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewPublisher(cfg, awsCfg, NewLogger(cfg.LogLevel)), nil
}
