// Package platform starts on this machine what the deployed stack gives the functions besides
// the API: the outbox publisher on the table's stream, the usage channels fed to the usage
// functions' handlers, and the billing queue fed to the billing worker. `go run ./local` and
// `make demo` (local/demo) start the same plumbing through it; each keeps what is its own (the
// state file, the monthly schedule, what it prints).
package platform

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/app"
)

// StartOutbox publishes the outbox the way the deployed publisher function does: it creates the
// event bus cfg.EventBus when missing and polls the table's stream, from from, into the handler
// that function runs (docs/events.md), logging to deps.Log. stop ends the polling.
func StartOutbox(ctx context.Context, emu *emulator.Stack, awsCfg aws.Config, cfg app.Config, deps *app.Deps, from streams.StartingPosition) (stop func(), err error) {
	if err := streams.EnsureBus(ctx, eventbridge.NewFromConfig(awsCfg), cfg.EventBus); err != nil {
		return nil, fmt.Errorf("event bus: %w", err)
	}
	pub := app.NewPublisher(cfg, awsCfg, deps.Log)
	return streams.StartOutbox(ctx, deps.Store.Table(), dynamodbstreams.NewFromConfig(awsCfg, emu.DynamoDBStreamsOptions()),
		pub.Handle, streams.Options{StartingPosition: from, Log: deps.Log})
}

// Usage is the usage channels StartUsage feeds.
type Usage struct {
	Clients   feeders.Clients
	Resources feeders.Resources
	// Stop ends the feeding.
	Stop func()
}

// StartUsage runs the usage channels the way their event sources do in AWS: it creates the usage
// queue (with its dead-letter queue and the visibility timeout visibility), stream and bucket
// of cfg when missing, and feeds the queue, the stream and the bucket's notifications to the
// usage functions' handlers (local/feeders), logging to deps.Log. The stream is read from its
// start on DynamoDB Local + moto (fresh), from now on elsewhere.
func StartUsage(ctx context.Context, emu *emulator.Stack, awsCfg aws.Config, cfg app.Config, deps *app.Deps, visibility time.Duration) (Usage, error) {
	u := Usage{Clients: feeders.NewClients(awsCfg)}
	var err error
	if u.Resources, err = feeders.EnsureUsage(ctx, u.Clients, cfg, visibility); err != nil {
		return u, fmt.Errorf("usage resources: %w", err)
	}
	consumers, err := app.NewUsageConsumers(ctx, cfg, awsCfg, deps.Log, emu.DynamoDBOptions())
	if err != nil {
		return u, err
	}
	u.Stop, err = feeders.StartUsage(ctx, u.Clients, u.Resources, consumers, feeders.Options{Log: deps.Log,
		Queue: feeders.SQSOptions{VisibilityTimeout: visibility}, Stream: feeders.KinesisOptions{Latest: emu.Mode != emulator.ModeLocal}})
	if err != nil {
		return u, fmt.Errorf("usage feeders: %w", err)
	}
	return u, nil
}

// StartBilling plays the billing infrastructure but its schedule: it creates the billing queue
// (with its dead-letter queue, 5 receives as in infra) and the exports bucket of cfg when
// missing, and feeds the queue to deps' billing worker like the Lambda event source mapping,
// pollers batches at once, a failed message coming back after visibility. stop ends the
// feeding and waits for the batches under way.
func StartBilling(ctx context.Context, awsCfg aws.Config, cfg app.Config, deps *app.Deps, pollers int, visibility time.Duration) (stop func(), err error) {
	c := feeders.NewClients(awsCfg)
	q, err := feeders.EnsureQueue(ctx, c.SQS, cfg.BillingQueue, cfg.BillingQueue+"-dlq", 5, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.ExportsBucket)}); err != nil {
		if _, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.ExportsBucket)}); err != nil {
			return nil, fmt.Errorf("exports bucket %s: %w", cfg.ExportsBucket, err)
		}
	}
	return feeders.NewSQS(c.SQS, q.URL, q.ARN, deps.BillingWorker().Handle, feeders.SQSOptions{Concurrency: pollers,
		VisibilityTimeout: visibility, Region: c.Region, Log: deps.Log, Detach: true}).Start(ctx), nil
}

// Clock is a clock for app.Deps.SetClock that a caller moves: the demo creates past-dated
// catalog data (which the services refuse before the current period, as they must) with it.
// The zero Clock reads the real time.
type Clock struct {
	mu sync.Mutex
	at time.Time
}

// Now returns the time the clock was set to, or the real time (UTC) when it is not set.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now().UTC()
	}
	return c.at
}

// Set moves the clock to t; the zero time puts it back on the real time.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.at = t; c.mu.Unlock() }
