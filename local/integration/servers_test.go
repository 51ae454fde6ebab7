package integration_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/local/platform"
	"github.com/channelbilling/cms/local/runner"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/ids"
)

// The second API servers of the tests that need a clock (catalog_test.go, billing_test.go,
// billing_close_test.go): they run on the shared table, through the same runner as the main
// server, and only their services' clock and what a test wraps around the services differ.

// newClockedServer starts an API server with cfg on the shared table whose services read now.
// prepare, when set, changes the services (wrapped stores, injected faults) before the runner
// is built on them.
func newClockedServer(cfg app.Config, now func() time.Time, prepare func(*app.Deps)) (*app.Deps, *httptest.Server, error) {
	d, err := app.New(context.Background(), cfg, itAWS, quiet, itStack.DynamoDBOptions())
	if err != nil {
		return nil, nil, err
	}
	d.SetClock(now)
	if prepare != nil {
		prepare(d)
	}
	rn, err := runner.New(d)
	if err != nil {
		return nil, nil, err
	}
	return d, httptest.NewServer(rn), nil
}

// billedServer is a clocked API server with a billing queue (and its dead-letter queue) fed to
// its billing worker like Lambda's event source, and a versioned exports bucket, of its own.
// Catalog data effective in past periods is created by moving its clock back (the services
// refuse dates before the current period, as they must).
type billedServer struct {
	deps     *app.Deps
	srv      *httptest.Server
	clock    *platform.Clock // zero: the real time; every step of a billing test sets it
	sqs      *sqs.Client
	billingQ feeders.Queue
	s3       *s3.Client
	bucket   string
}

// startBilledServer starts a billedServer whose queue and bucket are named after queuePrefix
// and bucketPrefix, and whose queue moves a message to its dead-letter queue at its
// maxReceive-th delivery. prepare is newClockedServer's; the worker starts after it.
func startBilledServer(queuePrefix, bucketPrefix string, maxReceive int, prepare func(*app.Deps)) (*billedServer, error) {
	ctx := context.Background()
	e := &billedServer{clock: &platform.Clock{}, sqs: sqs.NewFromConfig(itAWS), s3: s3.NewFromConfig(itAWS, app.S3Options(itAWS))}
	cfg := deps.Config
	suffix := strings.ToLower(ids.New("b")[2:])
	cfg.BillingQueue, cfg.ExportsBucket = queuePrefix+suffix, bucketPrefix+suffix
	var err error
	if e.billingQ, err = feeders.EnsureQueue(ctx, e.sqs, cfg.BillingQueue, cfg.BillingQueue+"-dlq", maxReceive, 30*time.Second); err != nil {
		return nil, err
	}
	e.bucket = cfg.ExportsBucket
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(e.bucket)}); err != nil {
		return nil, err
	}
	// Versioned, so that a test can tell a rewrite of an export from the file left there
	// before (the bytes of a deterministic rewrite are the same).
	if _, err := e.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(e.bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		return nil, err
	}
	if e.deps, e.srv, err = newClockedServer(cfg, e.clock.Now, prepare); err != nil {
		return nil, err
	}
	// A one-second visibility timeout: a failed message is delivered again a second later.
	feeders.NewSQS(e.sqs, e.billingQ.URL, e.billingQ.ARN, e.deps.BillingWorker().Handle, feeders.SQSOptions{Concurrency: 4,
		VisibilityTimeout: time.Second, Region: itAWS.Region, Log: quiet, Detach: true}).Start(ctx)
	return e, nil
}

// admin returns the platform admin's client calling this server.
func (e *billedServer) admin(t *testing.T) client {
	c := admin(t)
	c.base = e.srv.URL
	return c
}
