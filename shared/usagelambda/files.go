package usagelambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/usage"
)

// File drop layout: files under UsagePrefix are read, and each one's report is written under
// ReportPrefix with the file's key and ".json" appended (usage/2026/10/a.csv ->
// reports/usage/2026/10/a.csv.json).
const (
	UsagePrefix  = "usage/"
	ReportPrefix = "reports/"
	// FileBatch is how many records of a file go through the rating path at once.
	FileBatch = 500
)

// Report statuses.
const (
	// StatusCompleted: every line was read and answered (accepted, duplicate or rejected).
	StatusCompleted = "completed"
	// StatusFailed: the file could not be read to its end (corrupt), or some records could not
	// be counted for a transient reason after retries; the lines read so far are reported and
	// the drop is retried (a retry counts nothing twice).
	StatusFailed = "failed"
)

// RejectedLine is one rejected line of a file with every reason.
type RejectedLine struct {
	Line   int                 `json:"line"`
	ID     string              `json:"id,omitempty"`
	Errors []apperr.FieldError `json:"errors"`
}

// FileReport is the report object written for every dropped file.
type FileReport struct {
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Format      string    `json:"format"`
	Compressed  bool      `json:"compressed"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	Records     int       `json:"records"`
	Accepted    int       `json:"accepted"`
	Duplicates  int       `json:"duplicates"`
	Rejected    int       `json:"rejected"`
	Late        int       `json:"late"`
	NotCounted  int       `json:"notCounted"`
	StartedAt   time.Time `json:"startedAt"`
	CompletedAt time.Time `json:"completedAt"`
	// RejectedLines lists every rejected line, in file order.
	RejectedLines []RejectedLine `json:"rejectedLines"`
}

// Files is the handler of the usage bucket's object-created notifications.
type Files struct {
	Usage   Ingester
	Objects Objects
	Log     *slog.Logger
	Now     func() time.Time
	// Retries is how often a batch with records not counted for a transient reason is tried
	// again before the file is reported failed (default 3), Backoff the first wait (doubling,
	// default 200 ms).
	Retries int
	Backoff time.Duration
	// ReportMargin is how long before the function's deadline (the context's) the file stops
	// being read, so that its report is written before Lambda stops the function (default
	// DefaultReportMargin, at most half the time left).
	ReportMargin time.Duration
}

// DefaultReportMargin is the time kept, before the function's deadline, to write the report of a
// file cut short (a report of many rejected lines is a few megabytes).
const DefaultReportMargin = 10 * time.Second

// ReportKey returns the key of the report of the file at key.
func ReportKey(key string) string { return ReportPrefix + key + ".json" }

// Handle processes every file of the event whose key lies under UsagePrefix (others are
// ignored, so that a notification configured too widely never reads reports). It returns an
// error when a file must be processed again (Lambda retries the event; nothing counts twice).
func (h *Files) Handle(ctx context.Context, ev events.S3Event) error {
	var errs []error
	for _, r := range ev.Records {
		if !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			continue
		}
		key, err := url.QueryUnescape(r.S3.Object.Key) // S3 events URL-encode keys ('+' for space)
		if err != nil {
			key = r.S3.Object.Key
		}
		if !strings.HasPrefix(key, UsagePrefix) {
			logger(h.Log).Warn("usage file outside the usage prefix ignored", "bucket", r.S3.Bucket.Name, "key", key)
			continue
		}
		if err := h.File(ctx, r.S3.Bucket.Name, key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// File processes one dropped file and writes its report. It returns an error when the file must
// be processed again: it could not be read to its end, some records could not be counted for a
// transient reason, or the report could not be written.
func (h *Files) File(ctx context.Context, bucket, key string) error {
	log := logger(h.Log)
	rep := &FileReport{Bucket: bucket, Key: key, Status: StatusCompleted, StartedAt: nowOf(h.Now), RejectedLines: []RejectedLine{}}
	// Lambda stops the function at its deadline without a word: the file is read until a margin
	// before it, so that a file cut short is reported failed (and its event retried) rather than
	// left with no report, or with the report of an earlier attempt.
	readCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		margin := h.ReportMargin
		if margin <= 0 {
			margin = DefaultReportMargin
		}
		margin = min(margin, time.Until(deadline)/2)
		var cancel context.CancelFunc
		readCtx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
		defer cancel()
	}
	retryErr := h.read(readCtx, rep)
	rep.CompletedAt = nowOf(h.Now)
	body, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := h.Objects.Put(ctx, bucket, ReportKey(key), body, "application/json"); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	log.Info("usage file", "bucket", bucket, "key", key, "status", rep.Status, "records", rep.Records, "accepted", rep.Accepted,
		"duplicates", rep.Duplicates, "rejected", rep.Rejected, "notCounted", rep.NotCounted, "ms", rep.CompletedAt.Sub(rep.StartedAt).Milliseconds())
	return retryErr
}

// read fills the report; it returns an error only when the file must be processed again.
func (h *Files) read(ctx context.Context, rep *FileReport) error {
	body, err := h.Objects.Open(ctx, rep.Bucket, rep.Key)
	if apperr.Is(err, apperr.NotFound) {
		rep.Status, rep.Error = StatusFailed, "the file no longer exists"
		return nil
	}
	if err != nil {
		rep.Status, rep.Error = StatusFailed, "the file could not be read; it will be read again"
		return err
	}
	defer body.Close()
	f, err := usage.OpenFile(body, rep.Key)
	if err != nil {
		rep.Status, rep.Error = StatusFailed, "the file is not a readable usage file (corrupt gzip?)"
		return nil
	}
	rep.Format, rep.Compressed = string(f.Format()), f.Compressed()
	var retryErr error
	batch := make([]usage.Item, 0, FileBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := h.ingest(ctx, rep, batch); err != nil && retryErr == nil {
			retryErr = err
		}
		batch = batch[:0]
	}
	for {
		it, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The lines read so far are counted and reported; the rest are neither, so the file
			// must be read again (a dropped connection, a truncated object): an error makes the
			// event retried, and the lines already counted are duplicates then.
			flush()
			rep.Status, rep.Error = StatusFailed, fmt.Sprintf("the file could not be read after %d records: %v; it will be read again", f.Records(), err)
			if ctx.Err() != nil {
				return ctx.Err() // the function ran out of time
			}
			return fmt.Errorf("read after %d records: %w", f.Records(), err)
		}
		batch = append(batch, it)
		if len(batch) == FileBatch {
			flush()
			if ctx.Err() != nil {
				// Out of time: what is left is neither read nor counted (reading on would only
				// fail each batch); the retry reads the file from its start.
				rep.Status, rep.Error = StatusFailed, fmt.Sprintf("the function ran out of time after %d records; the file will be read again", f.Records())
				return ctx.Err()
			}
		}
	}
	flush()
	if retryErr != nil {
		rep.Status, rep.Error = StatusFailed, "some records could not be counted now; the file will be read again"
	}
	return retryErr
}

// ingest counts a batch of lines, retrying the records not counted for a transient reason.
func (h *Files) ingest(ctx context.Context, rep *FileReport, items []usage.Item) error {
	retries, wait := h.Retries, h.Backoff
	if retries <= 0 {
		retries = 3
	}
	if wait <= 0 {
		wait = 200 * time.Millisecond
	}
	pending := items
	for attempt := 0; ; attempt++ {
		r := h.Usage.Ingest(ctx, usage.Options{Source: usage.SourceFile, Name: rep.Key}, pending)
		var again []usage.Item
		var why string
		for i, o := range r.Outcomes {
			switch o.Status {
			case usage.Accepted:
				rep.Accepted++
				if o.Late {
					rep.Late++
				}
			case usage.Duplicate:
				rep.Duplicates++
			case usage.Rejected:
				rep.Rejected++
				rep.RejectedLines = append(rep.RejectedLines, RejectedLine{Line: lineOf(o.Ref), ID: o.ID, Errors: o.Errors})
			case usage.Retry:
				again = append(again, pending[i])
				if len(o.Errors) > 0 {
					why = o.Errors[0].Message
				}
				continue
			}
			rep.Records++
		}
		if len(again) == 0 {
			return nil
		}
		if attempt == retries || ctx.Err() != nil {
			rep.Records += len(again)
			rep.NotCounted += len(again)
			return fmt.Errorf("%d records not counted: %s", len(again), why)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait << attempt):
		}
		pending = again
	}
}

// lineOf reads the line number of a file item's Ref ("line 12").
func lineOf(ref string) int {
	var n int
	_, _ = fmt.Sscanf(ref, "line %d", &n)
	return n
}
