// Package usagelambda holds the Lambda handlers of the usage channels fed by event sources: the
// SQS consumer (partial batch failures by message id), the Kinesis consumer (by sequence
// number) and the file drops (S3 events). Each turns its event into usage items, runs them
// through usage.Service.Ingest (the one rating path) and sends the invalid records to the
// dead-letter queue with their reasons; only transient failures are reported back for retry,
// so one bad record never makes a batch retry forever.
package usagelambda

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/channelbilling/cms/shared/deadletters"
	"github.com/channelbilling/cms/shared/usage"
)

// Ingester is the rating path (usage.Service).
type Ingester interface {
	// Ingest runs a batch through the rating path and answers for every item.
	Ingest(ctx context.Context, opts usage.Options, items []usage.Item) *usage.Report
}

// DeadLetters receives the records that cannot be processed (deadletters.Queue).
type DeadLetters interface {
	// Send sends letters; an error means some may not have been sent. The caller then has the
	// delivery retried, which sends its letters again: letters are at least once.
	Send(ctx context.Context, letters []deadletters.Letter) error
}

// Objects reads dropped files and writes their reports (s3objects.Store).
type Objects interface {
	// Open streams an object; NotFound when it does not exist.
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, error)
	// Put writes an object.
	Put(ctx context.Context, bucket, key string, body []byte, contentType string) error
}

func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}

func nowOf(f func() time.Time) time.Time {
	if f != nil {
		return f().UTC()
	}
	return time.Now().UTC()
}

// letter returns the dead letter of a rejected item.
func letter(o usage.Outcome, it usage.Item, src deadletters.Source, at time.Time) deadletters.Letter {
	src.Ref = it.Ref
	return deadletters.Letter{Reason: o.Errors, Source: src, Record: deadletters.RecordBody(it.Raw), At: at}
}
