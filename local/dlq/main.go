// Command dlq lists and replays the usage dead letters (`make dlq ARGS="list"`):
//
//	go run ./local/dlq list               every dead letter: id, channel, where from, reason, record
//	go run ./local/dlq replay [-id ID]... send every dead letter (or the named ones) back to the
//	                                      usage queue and delete it; a record still invalid comes
//	                                      back as a new letter, one counted meanwhile is a duplicate;
//	                                      a stream batch description (the Kinesis event source's
//	                                      on-failure record) has its records read back from the
//	                                      stream and sent one by one
//
// It talks to the stack of a running `make local` (its state file), or, with AWS_ENDPOINT_URL or
// CMS_USE_AWS=1 set, to that endpoint or to AWS with the queues CMS_USAGE_DLQ and
// CMS_USAGE_QUEUE (names or URLs).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/deadletters/streambatch"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dlq:", err)
		os.Exit(1)
	}
}

type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }

// queues returns the dead-letter queue, the usage queue's URL and a Kinesis client (to replay
// stream batch descriptions).
func queues(ctx context.Context) (*deadletters.Queue, string, *kinesis.Client, error) {
	if os.Getenv("AWS_ENDPOINT_URL") == "" && os.Getenv("CMS_USE_AWS") == "" {
		st, err := feeders.ReadState()
		if err != nil {
			return nil, "", nil, err
		}
		cfg := aws.Config{Region: st.Region, BaseEndpoint: aws.String(st.AWSEndpoint),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
		return &deadletters.Queue{Client: sqs.NewFromConfig(cfg), URL: st.UsageDLQURL}, st.UsageQueueURL, kinesis.NewFromConfig(cfg), nil
	}
	cfg, err := app.FromEnv()
	if err != nil {
		return nil, "", nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	c := sqs.NewFromConfig(awsCfg)
	dlq, err := deadletters.QueueURL(ctx, c, cfg.UsageDLQ)
	if err != nil {
		return nil, "", nil, err
	}
	usage, err := deadletters.QueueURL(ctx, c, cfg.UsageQueue)
	if err != nil {
		return nil, "", nil, err
	}
	return &deadletters.Queue{Client: c, URL: dlq}, usage, kinesis.NewFromConfig(awsCfg), nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return errors.New("usage: dlq list, or dlq replay [-id MESSAGE_ID]")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var only idList
	fs.Var(&only, "id", "replay only this message (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	q, usageURL, k, err := queues(ctx)
	if err != nil {
		return err
	}
	msgs, err := q.All(ctx, 60)
	if err != nil {
		return err
	}
	// Whatever is not acted upon is made visible again on the way out.
	done := map[string]bool{}
	defer func() {
		for _, m := range msgs {
			if !done[m.ID] {
				_ = q.Release(context.WithoutCancel(ctx), m)
			}
		}
	}()
	switch cmd {
	case "list":
		for _, m := range msgs {
			src := "moved by SQS"
			if m.Letter != nil {
				src = m.Letter.Source.Channel + " " + m.Letter.Source.Ref
			}
			fmt.Fprintf(out, "%s\t%s\n\treason: %s\n\trecord: %s\n", m.ID, src, m.Reason(), m.ReplayBody())
		}
		fmt.Fprintf(out, "%d dead letters in %s\n", len(msgs), q.URL)
	case "replay":
		want := map[string]bool{}
		for _, id := range only {
			want[id] = true
		}
		n := 0
		for _, m := range msgs {
			if len(want) > 0 && !want[m.ID] {
				continue
			}
			if m.StreamBatch != nil {
				sent, err := streambatch.Replay(ctx, q, k, usageURL, m)
				if err != nil {
					return fmt.Errorf("replay the stream batch %s (%d records sent): %w", m.ID, sent, err)
				}
				done[m.ID] = true
				n++
				fmt.Fprintf(out, "replayed %s: %d records read back from the stream\n", m.ID, sent)
				continue
			}
			if err := q.Replay(ctx, usageURL, m); err != nil {
				return fmt.Errorf("replay %s: %w", m.ID, err)
			}
			done[m.ID] = true
			n++
			fmt.Fprintf(out, "replayed %s\n", m.ID)
		}
		fmt.Fprintf(out, "%d dead letters replayed into %s\n", n, usageURL)
	}
	return nil
}
