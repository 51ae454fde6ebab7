// Package billingqueue is the SQS adapter of the billing queue: it sends billing.Message values
// (JSON bodies, 10 per SendMessageBatch, several batches at once) and turns the SQS event a
// Lambda event source mapping delivers into billing work with partial batch failures.
package billingqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/deadletters"
)

// Queue sends billing messages to one SQS queue. Make it with New; the queue URL is resolved
// on first use (a name or a URL may be configured).
type Queue struct {
	client    deadletters.API
	nameOrURL string
	// Concurrency is how many SendMessageBatch calls run at once (default 8).
	Concurrency int

	mu  sync.Mutex
	url string
}

// New returns the queue named (or located) by nameOrURL.
func New(client deadletters.API, nameOrURL string) *Queue {
	return &Queue{client: client, nameOrURL: nameOrURL, Concurrency: 8}
}

// URL returns the queue's URL, resolving a name once.
func (q *Queue) URL(ctx context.Context) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.url != "" {
		return q.url, nil
	}
	u, err := deadletters.QueueURL(ctx, q.client, q.nameOrURL)
	if err != nil {
		return "", err
	}
	q.url = u
	return u, nil
}

// Send implements billing.Queue. It returns an error when any message could not be sent; the
// caller retries the whole send (billing work is idempotent).
func (q *Queue) Send(ctx context.Context, msgs []billing.Message) error {
	url, err := q.URL(ctx)
	if err != nil {
		return err
	}
	var batches [][]types.SendMessageBatchRequestEntry
	for start := 0; start < len(msgs); start += 10 {
		end := min(start+10, len(msgs))
		var b []types.SendMessageBatchRequestEntry
		for i, m := range msgs[start:end] {
			body, err := json.Marshal(m)
			if err != nil {
				return err
			}
			b = append(b, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body))})
		}
		batches = append(batches, b)
	}
	conc := max(q.Concurrency, 1)
	sem := make(chan struct{}, conc)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func(b []types.SendMessageBatchRequestEntry) {
			defer wg.Done()
			defer func() { <-sem }()
			err := q.sendBatch(ctx, url, b)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(b)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (q *Queue) sendBatch(ctx context.Context, url string, entries []types.SendMessageBatchRequestEntry) error {
	for attempt := 0; len(entries) > 0; attempt++ {
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			if attempt >= 4 {
				return fmt.Errorf("send billing messages: %w", err)
			}
			time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
			continue
		}
		if len(out.Failed) == 0 {
			return nil
		}
		if attempt >= 4 {
			return fmt.Errorf("send billing messages: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
		}
		var again []types.SendMessageBatchRequestEntry
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				again = append(again, e)
			}
		}
		entries = again
		time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
	}
	return nil
}

// Processor does one billing message (billing.Service.Process).
type Processor interface {
	Process(ctx context.Context, m billing.Message) error
}

// Worker is the billing worker's Lambda handler: one SQS batch, each message processed
// independently, failures reported by message id so that only they are delivered again (the
// event source mapping needs ReportBatchItemFailures). Each message carries its delivery count
// (ApproximateReceiveCount) to billing, which records a tenant as failed in its run at the
// billing.DefaultMaxAttempts-th delivery, and its message id (the same at every delivery), from
// which a scheduled start derives its run's id. A message that is not a billing message is reported
// failed too: after maxReceiveCount it lands in the dead-letter queue.
type Worker struct {
	Billing Processor
	Log     *slog.Logger
	// Concurrency is how many messages of a batch are processed at once (default 1: the
	// parallelism comes from concurrent invocations).
	Concurrency int
}

// ReceiveCount returns the message's ApproximateReceiveCount attribute (Lambda always passes
// it; 0 when absent or not a number).
func ReceiveCount(rec events.SQSMessage) int {
	n, err := strconv.Atoi(rec.Attributes["ApproximateReceiveCount"])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Handle implements the SQS event handler.
func (w *Worker) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	log := w.Log
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	var mu sync.Mutex
	var resp events.SQSEventResponse
	sem := make(chan struct{}, max(w.Concurrency, 1))
	var wg sync.WaitGroup
	for _, rec := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func(rec events.SQSMessage) {
			defer wg.Done()
			defer func() { <-sem }()
			m, err := billing.ParseMessage(rec.Body)
			if err == nil {
				m.Attempt, m.MessageID = ReceiveCount(rec), rec.MessageId
				err = w.Billing.Process(ctx, m)
			}
			if err != nil {
				log.Warn("billing message failed", "messageId", rec.MessageId, "kind", m.Kind, "run", m.RunID, "tenant", m.TenantID, "err", err)
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		}(rec)
	}
	wg.Wait()
	log.Info("billing batch", "messages", len(ev.Records), "failed", len(resp.BatchItemFailures), "ms", time.Since(start).Milliseconds())
	return resp, nil
}
