// Command local runs the whole platform on this machine: it starts the AWS emulators (DynamoDB
// Local and moto, installed on first use) unless AWS_ENDPOINT_URL or CMS_USE_AWS says otherwise,
// creates the table and the event bus, publishes the outbox from the table's stream, bootstraps
// the platform admin, and serves the API through the same handlers and authorizer that run in
// Lambda. Ctrl-C stops everything it started.
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
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/runner"
	"github.com/channelbilling/cms/local/streams"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/tablestore"
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

// startOutbox publishes the outbox the way the deployed publisher function does: it creates the
// event bus when missing and polls the table's stream into the handler that function runs
// (docs/events.md). A fresh emulator table (DynamoDB Local, LocalStack) is read from its start;
// a table that may hold older records (AWS_ENDPOINT_URL, CMS_USE_AWS) from the records written
// from now on. The returned stop ends the polling.
func startOutbox(ctx context.Context, stack *emulator.Stack, awsCfg aws.Config, cfg app.Config, deps *app.Deps) (func(), error) {
	if err := streams.EnsureBus(ctx, eventbridge.NewFromConfig(awsCfg), cfg.EventBus); err != nil {
		return nil, err
	}
	from := streams.TrimHorizon
	if stack.Mode != emulator.ModeLocal && stack.Mode != emulator.ModeLocalStack {
		from = streams.Latest
	}
	pub := app.NewPublisher(cfg, awsCfg, deps.Log)
	stop, err := streams.StartOutbox(ctx, deps.Store.Table(), dynamodbstreams.NewFromConfig(awsCfg, stack.DynamoDBStreamsOptions()),
		pub.Handle, streams.Options{StartingPosition: from, Log: deps.Log})
	if err != nil {
		return nil, err
	}
	fmt.Printf("» outbox: the table's stream is published to the event bus %s (from %s)\n", cfg.EventBus, from)
	return stop, nil
}
