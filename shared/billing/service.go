package billing

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
)

// Service runs billing: it starts runs, invoices tenants (the worker's messages), runs the
// commission run and the exports, and answers the billing, invoice and commission routes.
type Service struct {
	Store         Store
	Entities      Entities
	Catalog       Catalog
	Subscriptions Subscriptions
	Usage         UsageSource
	Queue         Queue
	// Exports writes the finance exports; nil skips them (logged).
	Exports Objects
	// PlatformCurrency is the currency of tenants that carry none.
	PlatformCurrency string
	Log              *slog.Logger
	Now              func() time.Time
	// Fault, when set, is called at stages of a tenant's invoice with the tenant's id
	// ("before_issue": computed, not stored; "after_issue": stored, flags not yet acknowledged)
	// and of a run with the run's id ("fanout": a page, before anything; "close": the close,
	// lease taken, nothing written); an error it returns fails the message there. Tests use it
	// to make a worker fail half way; production leaves it nil.
	Fault func(stage, tenantID string) error
	// MaxAttempts is the delivery of a tenant's message at which a failure is recorded in the run
	// instead of failing the message again (default DefaultMaxAttempts; keep it below the
	// queue's maxReceiveCount).
	MaxAttempts int
	// FanoutPage is how many subscriptions one fan-out message lists (default
	// DefaultFanoutPage).
	FanoutPage int
	// ResumeAfter is the age at which a run that is not closed is resumed when its period is
	// started again (default DefaultResumeAfter).
	ResumeAfter time.Duration
	// CloseLease is how long a close holds its period's lease (default DefaultCloseLease; keep
	// it above the worker's timeout).
	CloseLease time.Duration

	lookOnce sync.Once
	look     *lookups
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

func (s *Service) init() {
	s.lookOnce.Do(func() { s.look = &lookups{cat: s.Catalog, ttl: time.Minute} })
}

// RunInput is the body of POST /api/v1/billing/runs.
type RunInput struct {
	Period string `json:"period"`
}

// Validate checks the period's syntax.
func (in RunInput) Validate() (period.Period, error) {
	var f apperr.Fields
	f.Required("period", in.Period == "")
	p, err := period.Parse(in.Period)
	if in.Period != "" && err != nil {
		f.Add("period", "invalid", "period must be YYYY-MM")
	}
	return p, f.Err()
}

// StartRun starts a billing run of a closed period for the platform admin: it resumes the
// period's stuck runs (resumeStuck), stores the run and queues its fan-out; the run proceeds in
// the worker. Forbidden without billing.runs.create; Invalid on a bad period; Unprocessable
// "period_not_closed" for a period not yet ended; an internal error when the fan-out cannot be
// queued (the run is stored: the next start of the period resumes it).
func (s *Service) StartRun(ctx context.Context, pr access.Principal, in RunInput) (*Run, error) {
	if err := pr.Require(access.BillingRunsCreate); err != nil {
		return nil, err
	}
	p, err := in.Validate()
	if err != nil {
		return nil, err
	}
	return s.startRun(ctx, p, TriggerAPI, "")
}

func (s *Service) startRun(ctx context.Context, p period.Period, trigger, runID string) (*Run, error) {
	now := s.now()
	if now.Before(p.End()) {
		return nil, fieldErr(apperr.Unprocessable, "period", "period_not_closed", "The period "+p.String()+" has not ended yet.")
	}
	if err := s.resumeStuck(ctx, p, now); err != nil {
		return nil, err
	}
	if runID == "" {
		runID = ids.New("run")
	}
	r := &Run{ID: runID, Period: p, Status: RunRunning, Trigger: trigger, StartedAt: now, Failures: []TenantFailure{}}
	err := s.Store.CreateRun(ctx, r)
	if ae := apperr.As(err); err != nil && ae.Code == "run_exists" {
		// A retried start: its run exists; queue its fan-out again unless it went past it.
		if r, err = s.Store.GetRun(ctx, runID); err != nil {
			return nil, err
		}
		if r.Status != RunRunning || r.Planned {
			return r, nil
		}
	} else if err != nil {
		return nil, err
	}
	if err := s.Queue.Send(ctx, []Message{{Kind: KindFanout, RunID: r.ID, Period: p.String()}}); err != nil {
		// The run stays, never fanned out: the next start of the period resumes it.
		return nil, apperr.Wrap(err, "queue billing run")
	}
	s.log().Info("billing run started", "run", r.ID, "period", p.String(), "trigger", trigger)
	return r, nil
}

// resumeStuck queues again the pending step of every run of p that is not closed and has not
// moved for ResumeAfter: the fan-out (from its first page: recorded pages queue only the
// tenants the run has not counted, then the listing goes on where it stopped) of a running
// run, the close of a completed one. Steps are idempotent, so resuming a run that was only
// slow costs duplicate messages, never a duplicate invoice.
func (s *Service) resumeStuck(ctx context.Context, p period.Period, now time.Time) error {
	runs, err := s.Store.PeriodRuns(ctx, p)
	if err != nil {
		return err
	}
	after := s.ResumeAfter
	if after <= 0 {
		after = DefaultResumeAfter
	}
	var msgs []Message
	for _, r := range runs {
		since := r.StartedAt
		if r.CompletedAt != nil {
			since = *r.CompletedAt
		}
		if r.Closed || now.Sub(since) < after {
			continue
		}
		kind := KindClose
		if r.Status == RunRunning {
			kind = KindFanout
		}
		msgs = append(msgs, Message{Kind: kind, RunID: r.ID, Period: p.String()})
		s.log().Warn("billing run resumed", "run", r.ID, "period", p.String(), "status", r.Status, "step", kind, "since", since)
	}
	if len(msgs) == 0 {
		return nil
	}
	return apperr.Wrap(s.Queue.Send(ctx, msgs), "queue resumed runs")
}

// scheduledRunID derives the run id of a scheduled start from its queue message id: every
// delivery of one start message names one run.
func scheduledRunID(messageID string) string {
	h := sha256.Sum256([]byte("billing-start:" + messageID))
	return "run_" + runIDEncoding.EncodeToString(h[:16])
}

// runIDEncoding is the alphabet of ids.New, so that derived run ids look like the others.
var runIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// GetRun returns a run to a caller scoped at the platform. Forbidden without billing.runs.read;
// NotFound for another scope or an unknown id.
func (s *Service) GetRun(ctx context.Context, pr access.Principal, id string) (*Run, error) {
	if err := pr.Require(access.BillingRunsRead); err != nil {
		return nil, err
	}
	if pr.ScopePath != access.PlatformPath {
		return nil, apperr.NotFoundf("No billing run with this id.")
	}
	r, err := s.Store.GetRun(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return nil, apperr.NotFoundf("No billing run with this id.")
	}
	return r, err
}

// Process handles one message of the billing queue. An error means the message must be
// delivered again; every kind is idempotent.
func (s *Service) Process(ctx context.Context, m Message) error {
	s.init()
	switch m.Kind {
	case KindStart:
		p := period.Of(s.now()).Prev()
		if m.Period != "" {
			var err error
			if p, err = period.Parse(m.Period); err != nil {
				return fmt.Errorf("start: bad period %q", m.Period)
			}
		}
		id := ""
		if m.MessageID != "" {
			id = scheduledRunID(m.MessageID)
		}
		_, err := s.startRun(ctx, p, TriggerSchedule, id)
		return err
	case KindFanout:
		return s.fanout(ctx, m)
	case KindTenant:
		return s.tenant(ctx, m)
	case KindClose:
		return s.close(ctx, m.RunID)
	}
	return fmt.Errorf("unknown message kind %q", m.Kind)
}

// ErrBadMessage marks a message that can never be processed (it goes to the dead-letter queue).
var ErrBadMessage = errors.New("bad billing message")

// ParseMessage decodes a queue message body. ErrBadMessage when it is not a message.
func ParseMessage(body string) (Message, error) {
	var m Message
	if err := json.Unmarshal([]byte(body), &m); err != nil || m.Kind == "" {
		return Message{}, fmt.Errorf("%w: %s", ErrBadMessage, body)
	}
	return m, nil
}

// fanout handles one page of a run's fan-out: the page is listed and recorded once (its
// tenants counted in TenantsTotal in the same write), then its tenants' messages are queued
// with the next page's, so that no invocation reads more than a page of the listing. A page
// found recorded (a retry, a duplicate, a resumed run) queues the recorded tenants the run has
// not counted yet. The last page marks the run planned; the run completes when every tenant
// of every page is done.
func (s *Service) fanout(ctx context.Context, m Message) error {
	r, err := s.Store.GetRun(ctx, m.RunID)
	if err != nil {
		return err
	}
	if r.Status != RunRunning {
		// A duplicate page of a run that is over. The last page may be the one that completed
		// the run and then failed to queue its close (or was stopped before): its redelivery
		// queues the close again, or the run would stay unclosed.
		if r.Closed {
			return nil
		}
		pg, err := s.Store.FanoutPage(ctx, r.ID, m.Page)
		if apperr.Is(err, apperr.NotFound) || (err == nil && pg.Next != "") {
			return nil
		}
		if err != nil {
			return err
		}
		return s.maybeComplete(ctx, r.ID)
	}
	if err := s.fault("fanout", r.ID); err != nil {
		return err
	}
	pg, err := s.Store.FanoutPage(ctx, r.ID, m.Page)
	fresh := false
	if apperr.Is(err, apperr.NotFound) {
		if pg, err = s.listPage(ctx, r, m); err != nil {
			return err
		}
		if fresh, err = s.Store.RecordFanoutPage(ctx, r.ID, *pg, pg.Next == ""); err != nil {
			return err
		}
		if !fresh {
			pg, err = s.Store.FanoutPage(ctx, r.ID, m.Page)
		}
	}
	if err != nil {
		return err
	}
	tenants := pg.Tenants
	if !fresh && len(tenants) > 0 {
		counted, err := s.Store.CountedTenants(ctx, r.ID, tenants)
		if err != nil {
			return err
		}
		tenants = nil
		for _, t := range pg.Tenants {
			if !counted[t] {
				tenants = append(tenants, t)
			}
		}
	}
	var msgs []Message
	if pg.Next != "" {
		// First, so that the next page is listed while this page's tenants are invoiced.
		msgs = append(msgs, Message{Kind: KindFanout, RunID: r.ID, Period: r.Period.String(), Page: pg.Page + 1, Cursor: pg.Next, After: pg.Last})
	}
	for _, t := range tenants {
		msgs = append(msgs, Message{Kind: KindTenant, RunID: r.ID, Period: r.Period.String(), TenantID: t})
	}
	if err := s.Queue.Send(ctx, msgs); err != nil {
		return apperr.Wrap(err, "queue tenants")
	}
	s.log().Info("billing run fan-out page", "run", r.ID, "period", r.Period.String(), "page", pg.Page, "tenants", len(pg.Tenants),
		"queued", len(tenants), "last", pg.Next == "")
	if pg.Next != "" {
		return nil
	}
	return s.maybeComplete(ctx, r.ID)
}

// listPage lists one page of subscriptions and returns the tenants the run bills from it: those
// with a subscription active in the run's period, and those without one whose earlier usage
// is flagged (late usage of a tenant that cancelled: billed on an invoice of adjustments only).
func (s *Service) listPage(ctx context.Context, r *Run, m Message) (*FanoutPage, error) {
	size := s.FanoutPage
	if size <= 0 {
		size = DefaultFanoutPage
	}
	subs, next, err := s.Store.SubscriptionPage(ctx, m.Cursor, size)
	if err != nil {
		return nil, err
	}
	pg := &FanoutPage{Page: m.Page, Next: next, Last: m.After, Tenants: []string{}}
	type cand struct {
		id             string
		active, before bool
	}
	var order []*cand
	byID := map[string]*cand{}
	for _, sub := range subs {
		pg.Last = sub.TenantID
		if sub.TenantID == m.After {
			continue // the previous page decided this tenant
		}
		c := byID[sub.TenantID]
		if c == nil {
			c = &cand{id: sub.TenantID}
			byID[c.id] = c
			order = append(order, c)
		}
		c.active = c.active || activeIn(sub, r.Period)
		c.before = c.before || sub.StartDate.Before(r.Period.Start())
	}
	late := make([]bool, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, c := range order {
		if c.active || !c.before {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			changes, err := s.Usage.Changes(ctx, c.id)
			for _, ch := range changes {
				late[i] = late[i] || ch.Key.Period.Before(r.Period)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, c := range order {
		if c.active || late[i] {
			pg.Tenants = append(pg.Tenants, c.id)
		}
	}
	return pg, nil
}

// tenant invoices one tenant for the run's period, unless it already has an invoice for it
// (from this run's earlier delivery or from another run), then counts it in the run. A tenant
// that cannot be invoiced is counted as failed (giveUp) when the error is permanent or the
// message has been delivered MaxAttempts times; otherwise the error fails the message and SQS
// delivers it again.
func (s *Service) tenant(ctx context.Context, m Message) error {
	runID, tenantID := m.RunID, m.TenantID
	counted, err := s.Store.TenantCounted(ctx, runID, tenantID)
	if err != nil {
		return err
	}
	if !counted {
		r, err := s.Store.GetRun(ctx, runID)
		if err != nil {
			return err
		}
		created, err := s.issue(ctx, r, tenantID)
		if err != nil {
			if !s.giveUp(ctx, m, err) {
				return err
			}
			return s.failTenant(ctx, m, err)
		}
		if !created {
			if err := s.Store.CountTenant(ctx, runID, tenantID, false); err != nil {
				return err
			}
		}
	}
	return s.maybeComplete(ctx, runID)
}

// Permanent reports whether an error of a tenant's invoice would recur on every retry: an
// unbillable tenant (CodeUnbillable), an invalid or unprocessable value, or something the
// invoice needs that does not exist (a tenant, a plan). Conflicts, throttling and internal
// errors may be transient.
func Permanent(err error) bool {
	switch apperr.KindOf(err) {
	case apperr.Invalid, apperr.Unprocessable, apperr.NotFound:
		return true
	}
	return false
}

// giveUp reports whether the run stops retrying a tenant after err: a permanent error, or the
// MaxAttempts-th delivery of its message.
func (s *Service) giveUp(ctx context.Context, m Message, err error) bool {
	if ctx.Err() != nil {
		return false // the worker is stopping: the message comes back
	}
	maxAttempts := s.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	return Permanent(err) || m.Attempt >= maxAttempts
}

// failTenant records the tenant's failure in the run and completes the run when it was the last
// tenant. The reason shown is the error's own message for a permanent error and its code
// otherwise (details of internal errors stay in the logs).
func (s *Service) failTenant(ctx context.Context, m Message, cause error) error {
	ae := apperr.As(cause)
	f := TenantFailure{TenantID: m.TenantID, Code: CodeUnbillable, Reason: ae.Message, Attempts: max(m.Attempt, 1), At: s.now()}
	if len(ae.Fields) > 0 {
		f.Reason += " " + ae.Fields[0].Field + ": " + ae.Fields[0].Message
	}
	if !Permanent(cause) {
		f.Code = CodeAttemptsExhausted
		f.Reason = fmt.Sprintf("The invoice failed %d attempts (last error: %s).", f.Attempts, ae.Code)
	}
	if err := s.Store.FailTenant(ctx, m.RunID, f); err != nil {
		return err
	}
	s.log().Warn("billing run gave up on a tenant", "run", m.RunID, "tenant", m.TenantID, "code", f.Code, "attempts", f.Attempts, "err", cause)
	return s.maybeComplete(ctx, m.RunID)
}

// unbillable returns the permanent error of a tenant whose invoice cannot be computed; reason is
// shown on the run, cause goes to the logs.
func unbillable(reason string, cause error) error {
	return &apperr.Error{Kind: apperr.Unprocessable, Code: CodeUnbillable, Message: reason, Err: cause}
}

// issue computes and stores the tenant's invoice; false when the tenant already has one for
// the period (nothing written but the run's count, by the caller). A tenant that changed while
// its invoice was computed (a subscription created meanwhile), or whose subscription listing has
// not caught up with its counter yet, is computed again.
func (s *Service) issue(ctx context.Context, r *Run, tenantID string) (bool, error) {
	for attempt := 0; ; attempt++ {
		created, err := s.issueOnce(ctx, r, tenantID)
		if ae := apperr.As(err); err != nil && ae.Code == "tenant_changed" && attempt < 3 {
			// A short pause: the change may be a subscription the index lists only in a moment.
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
			continue
		}
		return created, err
	}
}

func (s *Service) issueOnce(ctx context.Context, r *Run, tenantID string) (bool, error) {
	if _, err := s.Store.InvoiceRef(ctx, tenantID, r.Period); err == nil {
		return false, nil
	} else if !apperr.Is(err, apperr.NotFound) {
		return false, err
	}
	// The usage contract: finish the pending increments a crashed writer left before reading
	// the flags, so that their flags can be acknowledged. Flags still pending (a writer within
	// its grace period) are billed at the total read and never acknowledged: what lands after
	// is billed by the next invoice.
	if left, err := s.Usage.ResolvePending(ctx, tenantID); err != nil {
		return false, err
	} else if left > 0 {
		s.log().Info("usage increments still pending", "run", r.ID, "tenant", tenantID, "flags", left)
	}
	d, in, err := s.gather(ctx, tenantID, r.Period)
	if err != nil {
		return false, err
	}
	if len(in.Seats) == 0 && len(in.Usage) == 0 && len(in.Late) == 0 {
		// Nothing to bill (a tenant queued for flags that turned out to be billed already or
		// of periods never invoiced): no empty invoice, and the flags are settled.
		s.acknowledge(ctx, tenantID, d.changes)
		return false, nil
	}
	inv, err := Compute(in)
	if err != nil {
		return false, unbillable("The invoice cannot be computed: "+err.Error()+".", err)
	}
	now := s.now()
	stored, err := s.toInvoice(d, inv, r, now)
	if err != nil {
		return false, err
	}
	ledgers := []Ledger{{TenantID: tenantID, Period: r.Period, Billed: d.billed}}
	for _, p := range sortedPeriods(d.ledgers) {
		ledgers = append(ledgers, d.ledgers[p])
	}
	subs := 0
	if d.tenant.NbOfSubscriptions != nil {
		subs = *d.tenant.NbOfSubscriptions
	}
	raise := d.tenant.InvoicedThrough == "" || d.tenant.InvoicedThrough < r.Period.String()
	if err := s.fault("before_issue", tenantID); err != nil {
		return false, err
	}
	year := now.Year()
	prefix := d.issuer.BillingID
	if prefix == "" {
		prefix = d.issuer.ID
	}
	for attempt := 0; ; attempt++ {
		last, err := s.Store.LastSeq(ctx, stored.IssuerID, year)
		if err != nil {
			return false, err
		}
		// The issue time is read after the issuer's counter, so that number order is date order:
		// number n+1 was read after invoice n was written, so after n's time was taken (up to
		// the clock skew between workers). Taken before, a worker that lost the number to a
		// faster one issued n+1 dated before n.
		if now = s.now(); now.Year() != year {
			year = now.Year() // the year turned meanwhile: number in the new year's sequence
			continue
		}
		stored.IssuedAt = now
		stored.Seq = last + 1
		stored.Number = fmt.Sprintf("%s-%04d-%06d", prefix, year, stored.Seq)
		ev, err := outbox.New(EventInvoiceGenerated, d.tenant.Path, now, InvoiceEvent{InvoiceID: stored.ID, Number: stored.Number,
			TenantID: tenantID, IssuerID: stored.IssuerID, Period: stored.Period, Total: stored.Total, RunID: r.ID})
		if err != nil {
			return false, apperr.Wrap(err, "invoice event")
		}
		err = s.Store.IssueInvoice(ctx, Issue{Invoice: stored, Year: year, Ledgers: ledgers, Event: ev, TenantSubs: subs, RaiseInvoicedThrough: raise})
		if err == nil {
			break
		}
		if ae := apperr.As(err); ae.Code == "invoice_exists" {
			return false, nil
		}
		if ae := apperr.As(err); (ae.Code == "number_taken" || ae.Code == "concurrent") && attempt < maxNumberAttempts {
			// Another invoice of this issuer took the number: take the next one. Jitter spreads
			// the workers of one busy issuer.
			time.Sleep(time.Duration(rand.IntN(20*(min(attempt, 5)+1))) * time.Millisecond)
			continue
		}
		return false, err
	}
	s.log().Info("invoice issued", "run", r.ID, "tenant", tenantID, "invoice", stored.ID, "number", stored.Number,
		"total", stored.Total.Amount.String(), "currency", stored.Currency)
	if err := s.fault("after_issue", tenantID); err != nil {
		return false, err
	}
	s.acknowledge(ctx, tenantID, d.changes)
	return true, nil
}

// acknowledge removes the flags an invoice accounted for, each at the version read; a flag
// with pending increments, or touched meanwhile, stays for the next invoice.
func (s *Service) acknowledge(ctx context.Context, tenantID string, changes []UsageChange) {
	for _, c := range changes {
		if c.Pending {
			continue
		}
		if err := s.Usage.Acknowledge(ctx, tenantID, c); err != nil && !apperr.Is(err, apperr.Conflict) {
			// The flag stays: the next invoice finds nothing more to bill and acknowledges it.
			s.log().Warn("usage flag not acknowledged", "tenant", tenantID, "err", err)
		}
	}
}

func (s *Service) fault(stage, tenantID string) error {
	if s.Fault == nil {
		return nil
	}
	return s.Fault(stage, tenantID)
}

func sortedPeriods[T any](m map[period.Period]T) []period.Period {
	out := make([]period.Period, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// InvoiceEvent is the detail of invoice.generated.
type InvoiceEvent struct {
	InvoiceID string      `json:"invoiceId"`
	Number    string      `json:"number"`
	TenantID  string      `json:"tenantId"`
	IssuerID  string      `json:"issuerId"`
	Period    string      `json:"period"`
	Total     money.Money `json:"total"`
	RunID     string      `json:"runId"`
}

// RunEvent is the detail of billing.run.completed (Status: completed or failed).
type RunEvent struct {
	RunID           string `json:"runId"`
	Period          string `json:"period"`
	Status          string `json:"status"`
	TenantsTotal    int    `json:"tenantsTotal"`
	TenantsFailed   int    `json:"tenantsFailed"`
	InvoicesCreated int    `json:"invoicesCreated"`
}

// toInvoice turns a computed invoice into the stored one, with the channel's shares.
func (s *Service) toInvoice(d *tenantData, inv Computed, r *Run, now time.Time) (*Invoice, error) {
	cur := d.currency
	mk := func(x money.Decimal) money.Money { return money.Money{Amount: x, Currency: cur} }
	out := &Invoice{ID: ids.New("inv"), TenantID: d.tenant.ID, TenantPath: d.tenant.Path, IssuerID: d.issuer.ID,
		Period: r.Period.String(), Status: InvoiceIssued, Currency: cur, IssuedAt: now, Total: mk(inv.Total),
		Lines: make([]InvoiceLine, 0, len(inv.Lines)), RunID: r.ID}
	for _, l := range inv.Lines {
		il := InvoiceLine{Kind: l.Kind, SubscriptionID: l.SubscriptionID, SKU: l.SKU, Description: l.Description,
			Quantity: l.Quantity, Amount: mk(l.Amount), Tiers: []TierAmount{}}
		for _, t := range l.Tiers {
			il.Tiers = append(il.Tiers, TierAmount{UpTo: t.UpTo, Quantity: t.Quantity, UnitPrice: t.UnitPrice, Amount: mk(t.Amount)})
		}
		if l.OriginalPeriod != "" {
			op := l.OriginalPeriod
			il.OriginalPeriod = &op
		}
		out.Lines = append(out.Lines, il)
	}
	platform, shares := Shares(inv)
	out.PlatformRevenue = platform
	paths := map[string]string{}
	for _, e := range d.chain {
		paths[e.ID] = e.Path
	}
	sum := platform
	for _, sh := range shares {
		out.Shares = append(out.Shares, EntityShare{EntityID: sh.EntityID, EntityPath: paths[sh.EntityID],
			Revenue: sh.Revenue, Cost: sh.Cost, Commission: sh.Commission})
		sum = sum.Add(sh.Commission)
	}
	if !sum.Equal(inv.Total) {
		// Split guarantees it; a violation is a bug and must never reach an invoice.
		return nil, unbillable("The commission invariant does not hold for this invoice.",
			fmt.Errorf("commission invariant broken: %s + commissions = %s, total %s", platform, sum, inv.Total))
	}
	return out, nil
}

// maybeComplete completes the run once every tenant is counted (billing.run.completed; status
// failed when a tenant failed) and queues the commission run and the exports of the invoices
// issued. Whoever counts the last tenant completes it; a retried message completes or queues
// again, both idempotent.
func (s *Service) maybeComplete(ctx context.Context, runID string) error {
	r, err := s.Store.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	if !r.Planned || r.TenantsDone < r.TenantsTotal || r.Closed {
		return nil
	}
	if r.Status == RunRunning {
		status := RunCompleted
		if r.TenantsFailed > 0 {
			status = RunFailed
		}
		ev, err := outbox.New(EventRunCompleted, access.PlatformPath, s.now(), RunEvent{RunID: r.ID, Period: r.Period.String(),
			Status: status, TenantsTotal: r.TenantsTotal, TenantsFailed: r.TenantsFailed, InvoicesCreated: r.InvoicesCreated})
		if err != nil {
			return apperr.Wrap(err, "run event")
		}
		done, err := s.Store.CompleteRun(ctx, r.ID, status, s.now(), ev)
		if err != nil {
			return err
		}
		if !done {
			return nil // someone else completed it and queues the close
		}
		s.log().Info("billing run completed", "run", r.ID, "period", r.Period.String(), "status", status, "tenants", r.TenantsTotal,
			"failed", r.TenantsFailed, "invoices", r.InvoicesCreated)
	}
	return s.Queue.Send(ctx, []Message{{Kind: KindClose, RunID: r.ID, Period: r.Period.String()}})
}
