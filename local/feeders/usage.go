package feeders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/usagelambda"
)

// S3Handler handles one S3 event, with the signature of a Lambda handler invoked by S3
// (usagelambda.Files.Handle); an error makes the event come again.
type S3Handler func(context.Context, events.S3Event) error

// S3Notifications adapts an S3 handler to the queue S3 notifies: each message is an S3 event
// ({"Records": [...]}, what S3 sends to SQS and to Lambda alike) handed to h; S3's test event
// (sent when the notification is configured) is dropped. A message whose event fails comes
// back after its visibility timeout, as Lambda retries a failed asynchronous invocation.
func S3Notifications(h S3Handler) SQSHandler {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		resp := events.SQSEventResponse{}
		for _, m := range ev.Records {
			var probe struct {
				Event string `json:"Event"`
			}
			if json.Unmarshal([]byte(m.Body), &probe) == nil && probe.Event == "s3:TestEvent" {
				continue
			}
			var s3ev events.S3Event
			if err := json.Unmarshal([]byte(m.Body), &s3ev); err != nil {
				continue // not an S3 event: nothing to do with it
			}
			if err := h(ctx, s3ev); err != nil {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
			}
		}
		return resp, nil
	}
}

// Clients are the AWS clients the usage resources and feeders use.
type Clients struct {
	SQS     *sqs.Client
	S3      *s3.Client
	Kinesis *kinesis.Client
	Region  string
}

// NewClients returns the clients of awsCfg (S3 path-style when awsCfg names an endpoint).
func NewClients(awsCfg aws.Config) Clients {
	return Clients{SQS: sqs.NewFromConfig(awsCfg), S3: s3.NewFromConfig(awsCfg, app.S3Options(awsCfg)),
		Kinesis: kinesis.NewFromConfig(awsCfg), Region: awsCfg.Region}
}

// Resources are the usage channels' resources: what infra creates in AWS.
type Resources struct {
	QueueURL, QueueARN           string
	DLQURL, DLQARN               string
	FilesQueueURL, FilesQueueARN string // the queue the bucket notifies (local only)
	Bucket                       string
	Stream, StreamARN            string
}

// MaxReceiveCount is the usage queue's redrive policy: a message received this often without
// being deleted moves to the dead-letter queue (as in infra).
const MaxReceiveCount = 5

// EnsureUsage creates, when missing, the usage queue (redriving to the dead-letter queue after
// MaxReceiveCount receives), the dead-letter queue, the usage bucket with its notification of
// objects created under usage/ to a queue of its own, and the usage stream (one shard), with
// the names of cfg (CMS_USAGE_QUEUE, CMS_USAGE_DLQ, CMS_USAGE_BUCKET, CMS_USAGE_STREAM).
// visibility is the usage queue's visibility timeout.
func EnsureUsage(ctx context.Context, c Clients, cfg app.Config, visibility time.Duration) (Resources, error) {
	var r Resources
	q, err := EnsureQueue(ctx, c.SQS, cfg.UsageQueue, cfg.UsageDLQ, MaxReceiveCount, visibility)
	if err != nil {
		return r, err
	}
	r.QueueURL, r.QueueARN, r.DLQURL, r.DLQARN = q.URL, q.ARN, q.DLQURL, q.DLQARN
	r.Bucket = cfg.UsageBucket
	if r.FilesQueueURL, r.FilesQueueARN, err = queue(ctx, c.SQS, cfg.UsageBucket+"-notifications", nil); err != nil {
		return r, err
	}
	if _, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(r.Bucket)}); err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		if !errors.As(err, &owned) {
			return r, fmt.Errorf("create bucket %s: %w", r.Bucket, err)
		}
	}
	_, err = c.S3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String(r.Bucket),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(r.FilesQueueARN), Events: []s3types.Event{s3types.EventS3ObjectCreated},
			Filter: &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{
				{Name: s3types.FilterRuleNamePrefix, Value: aws.String(usagelambda.UsagePrefix)}}}},
		}}}})
	if err != nil {
		return r, fmt.Errorf("bucket %s notification: %w", r.Bucket, err)
	}
	r.Stream = cfg.UsageStream
	if _, err := c.Kinesis.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(r.Stream), ShardCount: aws.Int32(1)}); err != nil {
		var inUse *ktypes.ResourceInUseException
		if !errors.As(err, &inUse) {
			return r, fmt.Errorf("create stream %s: %w", r.Stream, err)
		}
	}
	for i := 0; ; i++ {
		d, err := c.Kinesis.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(r.Stream)})
		if err != nil {
			return r, fmt.Errorf("stream %s: %w", r.Stream, err)
		}
		if s := d.StreamDescriptionSummary; s.StreamStatus == ktypes.StreamStatusActive {
			r.StreamARN = aws.ToString(s.StreamARN)
			break
		}
		if i == 100 {
			return r, fmt.Errorf("stream %s is not active", r.Stream)
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return r, nil
}

// Options tunes the usage feeders.
type Options struct {
	Queue  SQSOptions
	Files  SQSOptions
	Stream KinesisOptions
	Log    *slog.Logger
}

// StartUsage feeds the usage queue, the usage stream and the bucket's notifications to the
// usage consumers' handlers, as the deployed event sources do. stop ends them all.
func StartUsage(ctx context.Context, c Clients, r Resources, u *app.UsageConsumers, opts Options) (stop func(), err error) {
	if opts.Queue.Region == "" {
		opts.Queue.Region = c.Region
	}
	if opts.Files.Region == "" {
		opts.Files.Region = c.Region
	}
	if opts.Stream.Region == "" {
		opts.Stream.Region = c.Region
	}
	for _, o := range []*SQSOptions{&opts.Queue, &opts.Files} {
		if o.Log == nil {
			o.Log = opts.Log
		}
	}
	if opts.Stream.Log == nil {
		opts.Stream.Log = opts.Log
	}
	stopQueue := NewSQS(c.SQS, r.QueueURL, r.QueueARN, u.Queue.Handle, opts.Queue).Start(ctx)
	stopFiles := NewSQS(c.SQS, r.FilesQueueURL, r.FilesQueueARN, S3Notifications(u.Files.Handle), opts.Files).Start(ctx)
	stopStream, err := NewKinesis(c.Kinesis, r.Stream, r.StreamARN, u.Stream.Handle, opts.Stream).Start(ctx)
	if err != nil {
		stopQueue()
		stopFiles()
		return nil, err
	}
	return func() {
		stopQueue()
		stopFiles()
		stopStream()
	}, nil
}
