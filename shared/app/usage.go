package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/s3objects"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagecatalog"
	"github.com/channelbilling/cms/shared/usagelambda"
)

// wireUsage builds the usage service on the store: usage's view of the hierarchy, catalog and
// subscriptions (usagecatalog) and the exactly-once store.
func (d *Deps) wireUsage() {
	d.UsageStore = tablestore.NewUsage(d.Store)
	src := usagecatalog.New(d.Store, d.Store, d.Store, d.Config.PlatformCurrency)
	d.Usage = &usage.Service{Tenants: src, Resolver: src, Catalog: src, Pricer: src, Subscriptions: src,
		Store: d.UsageStore, Log: d.Log}
}

// UsageConsumers are the handlers of the usage functions fed by event sources, with what they
// are built on.
type UsageConsumers struct {
	Deps        *Deps
	DeadLetters *deadletters.Queue
	Objects     *s3objects.Store
	Queue       *usagelambda.Queue
	Stream      *usagelambda.Stream
	Files       *usagelambda.Files
}

// S3Options are the S3 client options of the platform: path-style addressing when the
// configuration names an endpoint (emulators, LocalStack), and no warning about the checksums
// emulators do not return.
func S3Options(awsCfg aws.Config) func(*s3.Options) {
	return func(o *s3.Options) {
		if awsCfg.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
		o.DisableLogOutputChecksumValidationSkipped = true
	}
}

// NewUsageConsumers builds the usage consumers: the table store and the usage service (no
// secret is read: the consumers serve no HTTP), the dead-letter queue (CMS_USAGE_DLQ, a name is
// resolved to its URL) and the S3 client of the file drops. It fails on bad configuration or a
// dead-letter queue that does not exist.
func NewUsageConsumers(ctx context.Context, cfg Config, awsCfg aws.Config, log *slog.Logger, ddbOpts ...func(*dynamodb.Options)) (*UsageConsumers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = NewLogger(cfg.LogLevel)
	}
	// A consumer has up to Usage.Concurrency requests in flight: keep that many connections
	// open (the SDK's default keeps 10, closing and reopening the others at every burst).
	ddbOpts = append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) { t.MaxIdleConnsPerHost = 64 })
	}}, ddbOpts...)
	d := &Deps{Config: cfg, Log: log, Store: tablestore.NewFromConfig(awsCfg, cfg.Table, ddbOpts...)}
	d.wireUsage()
	sq := sqs.NewFromConfig(awsCfg)
	url, err := deadletters.QueueURL(ctx, sq, cfg.UsageDLQ)
	if err != nil {
		return nil, fmt.Errorf("CMS_USAGE_DLQ: %w", err)
	}
	c := &UsageConsumers{Deps: d, DeadLetters: &deadletters.Queue{Client: sq, URL: url},
		Objects: &s3objects.Store{Client: s3.NewFromConfig(awsCfg, S3Options(awsCfg))}}
	c.Queue = &usagelambda.Queue{Usage: d.Usage, DeadLetters: c.DeadLetters, Log: log}
	c.Stream = &usagelambda.Stream{Usage: d.Usage, DeadLetters: c.DeadLetters, Log: log}
	c.Files = &usagelambda.Files{Usage: d.Usage, Objects: c.Objects, Log: log}
	return c, nil
}

// UsageFromLambdaEnv builds the usage consumers of a Lambda function: configuration from the
// environment, AWS credentials from the default chain. It fails fast on bad configuration.
func UsageFromLambdaEnv(ctx context.Context) (*UsageConsumers, error) {
	cfg, awsCfg, err := lambdaEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewUsageConsumers(ctx, cfg, awsCfg, NewLogger(cfg.LogLevel))
}
