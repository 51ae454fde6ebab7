// Command local runs the whole platform on this machine: it starts the AWS emulators (DynamoDB
// Local and moto, installed on first use) unless AWS_ENDPOINT_URL or CMS_USE_AWS says otherwise,
// creates the table and the event bus, publishes the outbox from the table's stream, runs the
// usage channels (queue, stream and file drops fed to the usage functions' handlers),
// bootstraps the platform admin, and serves the API through the same handlers and authorizer
// that run in Lambda. Ctrl-C stops everything it started.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/local/platform"
	"github.com/channelbilling/cms/local/runner"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usagelambda"
)

const (
	defaultAdminEmail    = "admin@example.com"
	defaultAdminPassword = "change-me-at-once"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := app.FromEnv()
	if err != nil {
		return err
	}
	fmt.Println("» starting the AWS emulators (first use installs them: a few minutes)")
	stack, err := emulator.Start(ctx, emulator.Options{Log: os.Stdout})
	if err != nil {
		return fmt.Errorf("emulators: %w", err)
	}
	defer stack.Close()
	awsCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("» DynamoDB at %s, other services at %s\n", stack.DynamoDBEndpoint, stack.AWSEndpoint)
	st := tablestore.NewFromConfig(awsCfg, cfg.Table, stack.DynamoDBOptions())
	if err := tablestore.CreateTable(ctx, st.DB(), cfg.Table); err != nil {
		return err
	}
	fmt.Printf("» table %s ready\n", cfg.Table)
	deps, err := app.New(ctx, cfg, awsCfg, app.NewLogger(cfg.LogLevel), stack.DynamoDBOptions())
	if err != nil {
		return err
	}
	stopOutbox, err := startOutbox(ctx, stack, awsCfg, cfg, deps)
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	defer stopOutbox()
	stopUsage, err := startUsage(ctx, stack, awsCfg, cfg, deps)
	if err != nil {
		return fmt.Errorf("usage channels: %w", err)
	}
	defer stopUsage()
	stopBilling, err := startBilling(ctx, awsCfg, cfg, deps)
	if err != nil {
		return fmt.Errorf("billing worker: %w", err)
	}
	defer stopBilling()
	email, password := env("CMS_ADMIN_EMAIL", defaultAdminEmail), env("CMS_ADMIN_PASSWORD", defaultAdminPassword)
	created, err := deps.Bootstrap(ctx, email, password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if created {
		fmt.Printf("» platform admin %s created (password from CMS_ADMIN_PASSWORD, default %q)\n", email, defaultAdminPassword)
	} else {
		fmt.Printf("» platform admin %s already exists\n", email)
	}
	rn, err := runner.New(deps)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + env("PORT", "8080")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rn, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("» API at http://%s  (docs: http://%s/swagger)  Ctrl-C stops\n", addr, addr)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	fmt.Println("» stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// startOutbox publishes the outbox the way the deployed publisher function does
// (platform.StartOutbox, docs/events.md). A fresh emulator table (DynamoDB Local, LocalStack) is
// read from its start; a table that may hold older records (AWS_ENDPOINT_URL, CMS_USE_AWS) from
// the records written from now on. The returned stop ends the polling.
func startOutbox(ctx context.Context, stack *emulator.Stack, awsCfg aws.Config, cfg app.Config, deps *app.Deps) (func(), error) {
	from := streams.TrimHorizon
	if stack.Mode != emulator.ModeLocal && stack.Mode != emulator.ModeLocalStack {
		from = streams.Latest
	}
	stop, err := platform.StartOutbox(ctx, stack, awsCfg, cfg, deps, from)
	if err != nil {
		return nil, err
	}
	fmt.Printf("» outbox: the table's stream is published to the event bus %s (from %s)\n", cfg.EventBus, from)
	return stop, nil
}

// startBilling plays the billing infrastructure: it creates the billing queue (with its
// dead-letter queue) and the exports bucket, feeds the queue to the billing worker's handler
// like the Lambda event source mapping (platform.StartBilling), and sends {"kind":"start"} at
// 00:05 UTC on the 1st like the EventBridge Scheduler schedule. The returned stop ends both.
func startBilling(ctx context.Context, awsCfg aws.Config, cfg app.Config, deps *app.Deps) (func(), error) {
	stopFeed, err := platform.StartBilling(ctx, awsCfg, cfg, deps, 8, 5*time.Second)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			now := time.Now().UTC()
			next := time.Date(now.Year(), now.Month(), 1, 0, 5, 0, 0, time.UTC)
			if !next.After(now) {
				next = next.AddDate(0, 1, 0)
			}
			select {
			case <-sctx.Done():
				return
			case <-time.After(time.Until(next)):
				if err := deps.Billing.Queue.Send(sctx, []billing.Message{{Kind: billing.KindStart}}); err != nil {
					deps.Log.Error("scheduled billing run", "err", err)
				}
			}
		}
	}()
	fmt.Printf("» billing: queue %s fed to the billing worker, exports in bucket %s, runs scheduled at 00:05 UTC on the 1st\n", cfg.BillingQueue, cfg.ExportsBucket)
	return func() { cancel(); stopFeed() }, nil
}

// startUsage runs the usage channels the way their event sources do in AWS: it creates the
// usage queue (with its dead-letter queue), stream and bucket when missing, and feeds the queue,
// the stream and the bucket's notifications to the usage functions' handlers
// (platform.StartUsage).
// It writes the state file the dead-letter CLI reads. The returned stop ends the feeding.
func startUsage(ctx context.Context, stack *emulator.Stack, awsCfg aws.Config, cfg app.Config, deps *app.Deps) (func(), error) {
	if stack.Mode == emulator.ModeAWS {
		// In an AWS account the deployed event sources feed the deployed functions: feeding them
		// from here too would rewire the bucket's notifications and race the functions.
		fmt.Println("» usage: real AWS: the deployed event sources feed the usage functions; nothing is fed from here")
		return func() {}, nil
	}
	const visibility = 180 * time.Second // as the deployed queue: six times the consumer's timeout
	u, err := platform.StartUsage(ctx, stack, awsCfg, cfg, deps, visibility)
	if err != nil {
		return nil, err
	}
	res, stop := u.Resources, u.Stop
	remove, err := feeders.WriteState(feeders.State{AWSEndpoint: stack.AWSEndpoint, DynamoDBEndpoint: stack.DynamoDBEndpoint,
		Region: awsCfg.Region, Table: cfg.Table, UsageQueueURL: res.QueueURL, UsageDLQURL: res.DLQURL, UsageBucket: res.Bucket, UsageStream: res.Stream})
	if err != nil {
		stop()
		return nil, err
	}
	fmt.Printf("» usage: queue %s, stream %s, files s3://%s/%s (reports under %s), dead letters: make dlq ARGS=list\n",
		cfg.UsageQueue, res.Stream, res.Bucket, usagelambda.UsagePrefix, usagelambda.ReportPrefix)
	return func() {
		stop()
		remove()
	}, nil
}
