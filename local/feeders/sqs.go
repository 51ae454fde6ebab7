// Package feeders plays, on this machine, Lambda's event sources for the usage functions and the
// billing worker: an SQS event source mapping (ReceiveMessage -> events.SQSEvent -> handler ->
// delete the messages that did not fail), a Kinesis one (GetRecords per shard ->
// events.KinesisEvent -> handler -> resume from the lowest failed sequence number), and S3
// notifications. For the last, the bucket notifies an SQS queue (moto implements S3 -> SQS
// notifications with AWS's message shape), and a feeder polls that queue and hands each
// notification, an events.S3Event, to the file-drop handler: in AWS the bucket invokes the
// function directly with the same event. The local runner (`make local`), `make demo`, the
// integration tests and the benchmarks use it.
package feeders

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSHandler handles one batch of messages, with the signature of a Lambda handler fed by SQS
// with ReportBatchItemFailures (usagelambda.Queue.Handle).
type SQSHandler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)

// SQSAPI is the part of the SQS client the feeder uses (*sqs.Client).
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// SQSOptions tunes an SQS feeder. The zero value is ready to use.
type SQSOptions struct {
	// BatchSize is the most messages per handler call (SQS's limit, at most 10). Default 10.
	BatchSize int32
	// Concurrency is how many pollers run at once, like the concurrent invocations Lambda
	// scales to. Default 2.
	Concurrency int
	// VisibilityTimeout hides received messages this long: a message whose batch failed comes
	// back after it. Default 30s.
	VisibilityTimeout time.Duration
	// WaitTime is the long-poll wait of each ReceiveMessage. Default 1s.
	WaitTime time.Duration
	// Region is the awsRegion of the records.
	Region string
	Log    *slog.Logger
	// OnBatch, when set, is called after each handler call with the number of messages handled
	// and deleted (progress bars, tests).
	OnBatch func(received, deleted int)
	// Detach hands the handler a context that stop does not cancel: a batch under way runs to
	// its end, as an invocation does when Lambda's event source is disabled, and stop waits for
	// it. The billing worker wants it (a message its context cut short would count a delivery
	// against its tenant); the usage handlers are left cancellable, so that stopping does not
	// wait for a large file drop.
	Detach bool
}

func (o SQSOptions) withDefaults() SQSOptions {
	if o.BatchSize <= 0 || o.BatchSize > 10 {
		o.BatchSize = 10
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.VisibilityTimeout <= 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	if o.WaitTime <= 0 {
		o.WaitTime = time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// SQSFeeder polls one queue into a handler.
type SQSFeeder struct {
	client   SQSAPI
	url, arn string
	handler  SQSHandler
	opts     SQSOptions
}

// NewSQS returns a feeder of the queue at url (whose ARN is arn) into h.
func NewSQS(client SQSAPI, url, arn string, h SQSHandler, opts SQSOptions) *SQSFeeder {
	return &SQSFeeder{client: client, url: url, arn: arn, handler: h, opts: opts.withDefaults()}
}

// Start runs the pollers in the background. stop ends them and waits for the handler calls
// under way.
func (f *SQSFeeder) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range f.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.run(ctx)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (f *SQSFeeder) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		n, err := f.Poll(ctx)
		if err != nil && ctx.Err() == nil {
			f.opts.Log.Warn("sqs feeder", "queue", f.url, "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		_ = n
	}
}

// Poll receives one batch, hands it to the handler and deletes the messages that did not fail.
// It returns how many messages it received.
func (f *SQSFeeder) Poll(ctx context.Context) (int, error) {
	out, err := f.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(f.url), MaxNumberOfMessages: f.opts.BatchSize,
		WaitTimeSeconds: int32(f.opts.WaitTime / time.Second), VisibilityTimeout: int32(f.opts.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return 0, err
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(out.Messages))}
	for i, m := range out.Messages {
		ev.Records[i] = LambdaMessage(m, f.arn, f.opts.Region)
	}
	hctx := ctx
	if f.opts.Detach {
		hctx = context.WithoutCancel(ctx)
	}
	res, err := f.handler(hctx, ev)
	if err != nil {
		// Lambda retries the whole batch: the messages come back after their visibility timeout.
		f.opts.Log.Error("sqs feeder: handler failed, the batch comes back", "queue", f.url, "messages", len(ev.Records), "err", err)
		if f.opts.OnBatch != nil {
			f.opts.OnBatch(len(ev.Records), 0)
		}
		return len(ev.Records), nil
	}
	failed := map[string]bool{}
	for _, bf := range res.BatchItemFailures {
		failed[bf.ItemIdentifier] = true
	}
	var del []types.DeleteMessageBatchRequestEntry
	for i, m := range out.Messages {
		if !failed[aws.ToString(m.MessageId)] {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(del) > 0 {
		if _, err := f.client.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(f.url), Entries: del}); err != nil {
			return len(out.Messages), err // they come back: the handler dedupes
		}
	}
	if f.opts.OnBatch != nil {
		f.opts.OnBatch(len(out.Messages), len(del))
	}
	return len(out.Messages), nil
}

// LambdaMessage converts a received message into the record Lambda's SQS event source delivers:
// the same messageId, receiptHandle, body, md5s, attributes (ApproximateReceiveCount,
// SentTimestamp, ...), messageAttributes, and eventSource, eventSourceARN, awsRegion.
func LambdaMessage(m types.Message, queueARN, region string) events.SQSMessage {
	out := events.SQSMessage{
		MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Md5OfBody: aws.ToString(m.MD5OfBody), Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
		Attributes: map[string]string{}, MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSourceARN: queueARN, EventSource: "aws:sqs", AWSRegion: region,
	}
	for k, v := range m.Attributes {
		out.Attributes[k] = v
	}
	for k, v := range m.MessageAttributes {
		out.MessageAttributes[k] = events.SQSMessageAttribute{StringValue: v.StringValue, BinaryValue: v.BinaryValue,
			StringListValues: v.StringListValues, BinaryListValues: v.BinaryListValues, DataType: aws.ToString(v.DataType)}
	}
	return out
}

// Queue is a queue made by EnsureQueue and its dead-letter queue.
type Queue struct {
	URL, ARN       string
	DLQURL, DLQARN string
}

// DLQRetention is the dead-letter queues' message retention, as in infra: 14 days, SQS's most.
const DLQRetention = 14 * 24 * time.Hour

// EnsureQueue creates, when missing, the queue name with the default visibility timeout
// visibility, and its dead-letter queue dlqName (retention DLQRetention), to which the queue's
// redrive policy moves a message received maxReceive times without being deleted, as in AWS.
// A queue that exists with other attributes is used as it is.
func EnsureQueue(ctx context.Context, c *sqs.Client, name, dlqName string, maxReceive int, visibility time.Duration) (Queue, error) {
	var q Queue
	var err error
	if q.DLQURL, q.DLQARN, err = queue(ctx, c, dlqName, map[string]string{
		"MessageRetentionPeriod": strconv.Itoa(int(DLQRetention / time.Second))}); err != nil {
		return q, err
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": q.DLQARN, "maxReceiveCount": strconv.Itoa(maxReceive)})
	q.URL, q.ARN, err = queue(ctx, c, name, map[string]string{
		"RedrivePolicy": string(redrive), "VisibilityTimeout": strconv.Itoa(int(visibility / time.Second))})
	return q, err
}

func queue(ctx context.Context, c *sqs.Client, name string, attrs map[string]string) (url, arn string, err error) {
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		// An existing queue with other attributes: use it as it is.
		got, gerr := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if gerr != nil {
			return "", "", fmt.Errorf("create queue %s: %w", name, err)
		}
		out = &sqs.CreateQueueOutput{QueueUrl: got.QueueUrl}
	}
	a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", fmt.Errorf("queue %s attributes: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), a.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
