package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/period"
)

// billingResources gives the fixture a billing queue (with its dead-letter queue) and an exports
// bucket of its own, as the stack does (CMS_BILLING_QUEUE, CMS_EXPORTS_BUCKET).
func billingResources(ctx context.Context, awsCfg aws.Config, cfg *app.Config) (feeders.Queue, error) {
	suffix := ids.New("q")[2:]
	cfg.BillingQueue = "cms-events-billing-" + suffix
	cfg.ExportsBucket = "cms-events-exports-" + suffix
	q, err := feeders.EnsureQueue(ctx, sqs.NewFromConfig(awsCfg), cfg.BillingQueue, cfg.BillingQueue+"-dlq", 5, 30*time.Second)
	if err != nil {
		return q, err
	}
	_, err = s3.NewFromConfig(awsCfg, app.S3Options(awsCfg)).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.ExportsBucket)})
	return q, err
}

// feedBillingWorker feeds a billing worker sample to the worker, built as its main builds it
// (app.NewBillingWorker, then BillingWorker().Handle), expects no failed message, then plays the
// event source mapping on the billing queue until it is empty: the run the sample started (and
// the one billing/start-run.json started) fans out, completes and closes, which writes the
// period's finance exports.
func (f *fixture) feedBillingWorker(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	var ev events.SQSEvent
	if err := readJSON(path, f.ids, &ev); err != nil {
		t.Fatal(err)
	}
	d, err := app.NewBillingWorker(f.cfg, f.awsCfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	handle := d.BillingWorker().Handle
	res, err := handle(ctx, ev)
	if err != nil || len(res.BatchItemFailures) != 0 {
		t.Fatalf("billingworker: %+v, %v", res, err)
	}

	// Poll hands each batch to the handler on this goroutine, so the handler may fail the test.
	feed := feeders.NewSQS(sqs.NewFromConfig(f.awsCfg), f.billingQ.URL, f.billingQ.ARN, func(ctx context.Context, batch events.SQSEvent) (events.SQSEventResponse, error) {
		res, err := handle(ctx, batch)
		if err != nil || len(res.BatchItemFailures) != 0 {
			t.Fatalf("billingworker on %d queued messages: %+v, %v", len(batch.Records), res, err)
		}
		return res, err
	}, feeders.SQSOptions{Region: f.awsCfg.Region, Log: quiet()})
	deadline := time.Now().Add(30 * time.Second)
	for empty := 0; empty < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the billing queue did not drain in 30 s")
		}
		n, err := feed.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			empty++
			continue
		}
		empty = 0
	}

	// The scheduled start bills the period that ended; its close step wrote the exports.
	key := "exports/" + period.Of(time.Now()).Prev().String() + "/invoices.csv"
	obj, err := s3.NewFromConfig(f.awsCfg, app.S3Options(f.awsCfg)).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.cfg.ExportsBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("no %s in the exports bucket: %v", key, err)
	}
	obj.Body.Close()
}
