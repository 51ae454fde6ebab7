package usage

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// Service is the one rating path of every channel (Ingest) and the period's totals with their
// charges (List).
type Service struct {
	Tenants       Tenants
	Resolver      Resolver
	Catalog       Catalog
	Pricer        Pricer
	Subscriptions Subscriptions
	Store         Store
	Now           func() time.Time
	Log           *slog.Logger
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Options says how a batch arrived.
type Options struct {
	Source Source
	// Scope, when set, is the caller's scope path (the API): a record of a tenant outside it is
	// rejected as an unknown tenant, never counted, and its existence is not revealed.
	Scope string
	// Name identifies the batch in the log line (a request id, an object key, ...).
	Name string
}

// Outcome is what became of one item.
type Outcome struct {
	Ref    string
	ID     string
	Status Status
	// Errors say why a record was rejected (every problem at once) or, for Retry, why it must
	// be delivered again (code "retry" or "in_progress").
	Errors         []apperr.FieldError
	SubscriptionID string
	// Late reports an accepted record whose period was already invoiced (SPEC 10).
	Late bool
}

// Report is the answer for a batch: one Outcome per item, in order, and the counts.
type Report struct {
	Outcomes   []Outcome
	Accepted   int
	Duplicates int
	Rejected   int
	Retry      int
	Late       int
}

// count recomputes the counts from the outcomes.
func (r *Report) count() {
	r.Accepted, r.Duplicates, r.Rejected, r.Retry, r.Late = 0, 0, 0, 0, 0
	for _, o := range r.Outcomes {
		switch o.Status {
		case Accepted:
			r.Accepted++
			if o.Late {
				r.Late++
			}
		case Duplicate:
			r.Duplicates++
		case Rejected:
			r.Rejected++
		case Retry:
			r.Retry++
		}
	}
}

// rejection returns the field errors of an error that rejects a record (Invalid,
// Unprocessable, NotFound), naming field when the error names none; ok is false for a
// transient error.
func rejection(err error, field string) ([]apperr.FieldError, bool) {
	switch apperr.KindOf(err) {
	case apperr.Invalid, apperr.Unprocessable, apperr.NotFound:
	default:
		return nil, false
	}
	ae := apperr.As(err)
	if len(ae.Fields) > 0 {
		return ae.Fields, true
	}
	code := ae.Code
	if code == "" || code == string(ae.Kind) {
		code = map[apperr.Kind]string{apperr.NotFound: "not_found"}[ae.Kind]
		if code == "" {
			code = "invalid"
		}
	}
	return []apperr.FieldError{{Field: field, Code: code, Message: ae.Message}}, true
}

func retryOutcome(err error) []apperr.FieldError {
	code, msg := "retry", "The record could not be counted now; deliver it again."
	if errors.Is(err, ErrInProgress) {
		code, msg = "in_progress", "Another delivery of this record is being counted; deliver it again later."
	}
	return []apperr.FieldError{{Code: code, Message: msg}}
}

// ErrInProgress is the Retry reason of a record another delivery is counting right now.
var ErrInProgress = errors.New("another delivery of the record is in progress")

type tenantAnswer struct {
	t   *Tenant
	err error
}

type thresholdAnswer struct {
	t   []money.Decimal
	err error
}

// Ingest runs a batch through the rating path: parse and validate each item, find its tenant
// and subscription, group the records per subscription, SKU and period, and count them once
// (Store.Record). Invalid records are rejected with every reason and never stop the others.
// It never fails as a whole: a transient failure marks the records concerned Retry. It logs
// one line per batch.
func (s *Service) Ingest(ctx context.Context, opts Options, items []Item) *Report {
	start := time.Now()
	now := s.now()
	rep := &Report{Outcomes: make([]Outcome, len(items))}
	tenants := map[string]tenantAnswer{}
	thresholds := map[string]thresholdAnswer{}
	aggIndex := map[AggregateKey]int{}
	aggFailed := map[int]error{}
	b := &Batch{Source: opts.Source, Now: now}
	var entryItem []int
	for i := range items {
		it := &items[i]
		o := &rep.Outcomes[i]
		o.Ref, o.ID = it.Ref, it.Input.ID
		reject := func(errs []apperr.FieldError) { o.Status, o.Errors = Rejected, errs }
		if len(it.Errs) > 0 {
			reject(it.Errs)
			continue
		}
		rec, errs := it.Input.Parse(now)
		if len(errs) > 0 {
			reject(errs)
			continue
		}
		rec.Source = opts.Source
		ta, seen := tenants[rec.TenantID]
		if !seen {
			ta.t, ta.err = s.Tenants.Tenant(ctx, rec.TenantID)
			tenants[rec.TenantID] = ta
		}
		if ta.err != nil {
			if apperr.Is(ta.err, apperr.NotFound) {
				reject([]apperr.FieldError{{Field: "tenantId", Code: "not_found", Message: "no tenant with this id"}})
			} else {
				o.Status, o.Errors = Retry, retryOutcome(ta.err)
				s.log().Warn("usage tenant lookup", "tenant", rec.TenantID, "err", ta.err)
			}
			continue
		}
		t := ta.t
		if opts.Scope != "" && !strings.HasPrefix(t.Path, opts.Scope) {
			reject([]apperr.FieldError{{Field: "tenantId", Code: "not_found", Message: "no tenant with this id"}})
			continue
		}
		res, err := s.Resolver.Resolve(ctx, t, rec.SubscriptionID, rec.SKU, rec.Timestamp)
		if err != nil {
			if fe, ok := rejection(err, "sku"); ok {
				reject(fe)
			} else {
				o.Status, o.Errors = Retry, retryOutcome(err)
				s.log().Warn("usage resolve", "tenant", rec.TenantID, "err", err)
			}
			continue
		}
		rec.SubscriptionID, rec.SKU = res.SubscriptionID, res.SKU
		o.SubscriptionID = res.SubscriptionID
		key := AggregateKey{SubscriptionID: res.SubscriptionID, SKU: res.SKU, Period: period.Of(rec.Timestamp)}
		ai, ok := aggIndex[key]
		if !ok {
			th, seen := thresholds[res.SKU]
			if !seen {
				th.t, th.err = s.Catalog.Thresholds(ctx, res.SKU)
				if apperr.Is(th.err, apperr.NotFound) {
					th.err = nil // resolved a moment ago: a SKU deleted since has no thresholds
				}
				thresholds[res.SKU] = th
			}
			late := t.Invoiced(key.Period)
			ai = len(b.Aggregates)
			aggIndex[key] = ai
			b.Aggregates = append(b.Aggregates, Aggregate{Key: key, TenantID: t.ID, TenantPath: t.Path, Thresholds: th.t,
				Late: late, Closing: late || !now.Before(key.Period.End().Add(-ClosingMargin))})
			if th.err != nil {
				aggFailed[ai] = th.err
			}
		}
		if err := aggFailed[ai]; err != nil {
			o.Status, o.Errors = Retry, retryOutcome(err)
			continue
		}
		if it.Redelivered {
			b.Redelivery = true
		}
		b.Entries = append(b.Entries, Entry{Record: rec, Aggregate: ai})
		entryItem = append(entryItem, i)
	}
	var storeErr error
	if len(b.Entries) > 0 {
		results, err := s.Store.Record(ctx, b)
		if err == nil && len(results) != len(b.Entries) {
			err = errors.New("store answered for the wrong number of entries")
		}
		storeErr = err
		for j, i := range entryItem {
			o := &rep.Outcomes[i]
			if err != nil {
				o.Status, o.Errors = Retry, retryOutcome(err)
				continue
			}
			r := results[j]
			o.Status = r.Status
			switch r.Status {
			case Retry:
				o.Errors = retryOutcome(r.Err)
			case Accepted:
				o.Late = b.Aggregates[b.Entries[j].Aggregate].Late
			}
		}
	}
	rep.count()
	attrs := []any{"source", string(opts.Source), "batch", opts.Name, "records", len(items), "accepted", rep.Accepted,
		"duplicates", rep.Duplicates, "rejected", rep.Rejected, "retry", rep.Retry, "late", rep.Late,
		"aggregates", len(b.Aggregates), "redelivery", b.Redelivery, "ms", time.Since(start).Milliseconds()}
	if storeErr != nil {
		s.log().Error("usage batch", append(attrs, "err", storeErr)...)
	} else {
		s.log().Info("usage batch", attrs...)
	}
	return rep
}
