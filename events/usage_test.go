package events_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/usagelambda"
)

var (
	usageOnce sync.Once
	usage     *app.UsageConsumers
	usageErr  error
)

// consumers builds the usage consumers as their mains do (app.NewUsageConsumers), on the
// fixture's table, with a dead-letter queue of their own and the bucket the file sample names.
func (f *fixture) consumers(t *testing.T) *app.UsageConsumers {
	t.Helper()
	usageOnce.Do(func() {
		ctx := context.Background()
		cfg := f.cfg
		cfg.UsageDLQ = "cms-events-usage-dlq-" + ids.New("q")[2:]
		if _, err := sqs.NewFromConfig(f.awsCfg).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(cfg.UsageDLQ)}); err != nil {
			usageErr = err
			return
		}
		_, err := s3.NewFromConfig(f.awsCfg, app.S3Options(f.awsCfg)).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cms-usage")})
		var owned *s3types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			usageErr = err
			return
		}
		usage, usageErr = app.NewUsageConsumers(ctx, cfg, f.awsCfg, quiet())
	})
	if usageErr != nil {
		t.Fatal(usageErr)
	}
	return usage
}

// feedUsage feeds a usage sample to its consumer: its invalid records go to the dead-letter
// queue, nothing is reported failed (none is transient), and a file gets its report.
func (f *fixture) feedUsage(t *testing.T, fn, path string) {
	t.Helper()
	ctx := context.Background()
	c := f.consumers(t)
	switch fn {
	case "usagequeue":
		var ev events.SQSEvent
		if err := readJSON(path, f.ids, &ev); err != nil {
			t.Fatal(err)
		}
		res, err := c.Queue.Handle(ctx, ev)
		if err != nil || len(res.BatchItemFailures) != 0 {
			t.Errorf("usagequeue: %+v, %v", res, err)
		}
	case "usagestream":
		var ev events.KinesisEvent
		if err := readJSON(path, f.ids, &ev); err != nil {
			t.Fatal(err)
		}
		res, err := c.Stream.Handle(ctx, ev)
		if err != nil || len(res.BatchItemFailures) != 0 {
			t.Errorf("usagestream: %+v, %v", res, err)
		}
	case "usagefiles":
		var ev events.S3Event
		if err := readJSON(path, f.ids, &ev); err != nil {
			t.Fatal(err)
		}
		// The dropped file: S3 events URL-encode keys ("+" is a space).
		key := strings.ReplaceAll(ev.Records[0].S3.Object.Key, "+", " ")
		csv := "id,tenantId,sku,quantity,timestamp\nf-1,tnt_unknown,storage-gb,1,2026-11-23T17:00:00Z\n"
		if err := c.Objects.Put(ctx, ev.Records[0].S3.Bucket.Name, key, []byte(csv), "text/csv"); err != nil {
			t.Fatal(err)
		}
		if err := c.Files.Handle(ctx, ev); err != nil {
			t.Fatalf("usagefiles: %v", err)
		}
		body, err := c.Objects.Open(ctx, ev.Records[0].S3.Bucket.Name, usagelambda.ReportKey(key))
		if err != nil {
			t.Fatalf("no report: %v", err)
		}
		body.Close()
	}
}
