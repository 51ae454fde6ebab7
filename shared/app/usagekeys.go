package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/channelbilling/cms/shared/keyprovisioner"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// NewKeyProvisioner returns the API key provisioner (the usagekeys function's handler): the
// usage key secret read from cfg.Table (created on first use, as New does), API Gateway through
// a client made from awsCfg. API Gateway's management calls are throttled at a few per second
// per account, so the client makes up to 10 attempts of a throttled call, with backoff and no
// retry budget, instead of the SDK's default 3 attempts within a budget. It needs no signing key:
// it issues and verifies nothing.
func NewKeyProvisioner(ctx context.Context, cfg Config, pcfg keyprovisioner.Config, awsCfg aws.Config, log *slog.Logger, ddbOpts ...func(*dynamodb.Options)) (*keyprovisioner.Provisioner, error) {
	store := tablestore.NewFromConfig(awsCfg, cfg.Table, ddbOpts...)
	keys, err := usageDeriver(ctx, store)
	if err != nil {
		return nil, err
	}
	gw := apigateway.NewFromConfig(awsCfg, func(o *apigateway.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts, so.MaxBackoff, so.RateLimiter = 10, 20*time.Second, ratelimit.None
		})
	})
	return keyprovisioner.New(gw, keys, store, pcfg, log)
}

// KeyProvisionerFromLambdaEnv builds the usagekeys function's handler from the environment
// (app.Config's variables and keyprovisioner's CMS_USAGE_KEY_PREFIX and CMS_USAGE_PLAN_*). It
// fails fast on bad configuration.
func KeyProvisionerFromLambdaEnv(ctx context.Context) (*keyprovisioner.Provisioner, error) {
	cfg, awsCfg, err := lambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	pcfg, err := keyprovisioner.ConfigFromEnv()
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return NewKeyProvisioner(ctx, cfg, pcfg, awsCfg, NewLogger(cfg.LogLevel))
}

// usageDeriver reads the usage key secret from the table (creating it on first use) and returns
// the deriver of the channel entities' API key values.
func usageDeriver(ctx context.Context, store *tablestore.Store) (*usagekeys.Deriver, error) {
	secret, err := store.Secret(ctx, usagekeys.SecretName, nil)
	if err != nil {
		return nil, fmt.Errorf("usage key secret: %w", err)
	}
	return usagekeys.NewDeriver(secret)
}
