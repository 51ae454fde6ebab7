// Package sqsfeed plays a Lambda SQS event source mapping locally: it long-polls a queue (moto,
// LocalStack or AWS), hands each batch of up to 10 messages to a function's SQS handler, deletes
// the messages the handler did not report as failed (ReportBatchItemFailures), and leaves the
// failed ones to come back after the visibility timeout; the queue's redrive policy moves a
// message received too often to its dead-letter queue, as in AWS. Several pollers run at once,
// like concurrent invocations.
package sqsfeed

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

// Handler is a function's SQS handler.
type Handler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)

// Options tune the feed.
type Options struct {
	// Pollers is how many batches are handled at once (default 4).
	Pollers int
	// Visibility is the visibility timeout of received messages in seconds (default 5): how
	// long a failed message waits before it is delivered again.
	Visibility int32
	Log        *slog.Logger
}

// EnsureQueue creates the queue name with a dead-letter queue dlqName (maxReceive deliveries
// before a message moves there) unless they exist, and returns the queue's URL.
func EnsureQueue(ctx context.Context, c *sqs.Client, name, dlqName string, maxReceive int) (string, error) {
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(dlqName)})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", dlqName, err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", dlqName, err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": strconv.Itoa(maxReceive)})
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"RedrivePolicy": string(redrive), "VisibilityTimeout": "30"}})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(q.QueueUrl), nil
}

// Start polls the queue at url into h until ctx ends or stop is called; stop waits for the
// batches in progress.
func Start(ctx context.Context, c *sqs.Client, url string, h Handler, opts Options) (stop func()) {
	if opts.Pollers <= 0 {
		opts.Pollers = 4
	}
	if opts.Visibility <= 0 {
		opts.Visibility = 5
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range opts.Pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := pollOnce(ctx, c, url, h, opts.Visibility); err != nil && ctx.Err() == nil {
					log.Warn("sqs feed", "queue", url, "err", err)
					time.Sleep(500 * time.Millisecond)
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func pollOnce(ctx context.Context, c *sqs.Client, url string, h Handler, visibility int32) error {
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
		WaitTimeSeconds: 1, VisibilityTimeout: visibility,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil {
		return err
	}
	if len(out.Messages) == 0 {
		return nil
	}
	ev := events.SQSEvent{}
	for _, m := range out.Messages {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Attributes: m.Attributes, EventSource: "aws:sqs"})
	}
	resp, err := h(context.WithoutCancel(ctx), ev)
	if err != nil {
		return err // the whole batch comes back, as in Lambda
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	var del []types.DeleteMessageBatchRequestEntry
	for i, m := range out.Messages {
		if !failed[aws.ToString(m.MessageId)] {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(del) > 0 {
		if _, err := c.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del}); err != nil {
			return err
		}
	}
	return nil
}
