package billing

import (
	"context"
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
	// Fault, when set, is called at stages of a tenant's invoice ("before_issue": computed, not
	// stored; "after_issue": stored, flags not yet acknowledged); an error it returns fails the
	// message there. Tests use it to make a worker fail half way; production leaves it nil.
	Fault func(stage, tenantID string) error
	// MaxAttempts is the delivery of a tenant's message at which a failure is recorded in the run
	// instead of failing the message again (default DefaultMaxAttempts; keep it below the
	// queue's maxReceiveCount).
	MaxAttempts int

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

// StartRun starts a billing run of a closed period for the platform admin: it stores the run
// and queues its fan-out; the run proceeds in the worker. Forbidden without billing.runs.create;
// Invalid on a bad period; Unprocessable "period_not_closed" for a period not yet ended.
func (s *Service) StartRun(ctx context.Context, pr access.Principal, in RunInput) (*Run, error) {
	if err := pr.Require(access.BillingRunsCreate); err != nil {
		return nil, err
	}
	p, err := in.Validate()
	if err != nil {
		return nil, err
	}
	return s.startRun(ctx, p, TriggerAPI)
}

func (s *Service) startRun(ctx context.Context, p period.Period, trigger string) (*Run, error) {
	now := s.now()
	if now.Before(p.End()) {
		return nil, fieldErr(apperr.Unprocessable, "period", "period_not_closed", "The period "+p.String()+" has not ended yet.")
	}
	r := &Run{ID: ids.New("run"), Period: p, Status: RunRunning, Trigger: trigger, StartedAt: now, Failures: []TenantFailure{}}
	if err := s.Store.CreateRun(ctx, r); err != nil {
		return nil, err
	}
	if err := s.Queue.Send(ctx, []Message{{Kind: KindFanout, RunID: r.ID, Period: p.String()}}); err != nil {
		return nil, apperr.Wrap(err, "queue billing run")
	}
	s.log().Info("billing run started", "run", r.ID, "period", p.String(), "trigger", trigger)
	return r, nil
}

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
		_, err := s.startRun(ctx, p, TriggerSchedule)
		return err
	case KindFanout:
		return s.fanout(ctx, m.RunID)
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

// fanout lists the tenants with a subscription active in the run's period, records their count
// and queues one message each. Repeating it queues them again; the tenants' work is idempotent.
func (s *Service) fanout(ctx context.Context, runID string) error {
	r, err := s.Store.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	subs, err := s.Subscriptions.ListSubscriptions(ctx, access.PlatformPath)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var tenants []string
	for _, sub := range subs {
		if activeIn(sub, r.Period) && !seen[sub.TenantID] {
			seen[sub.TenantID] = true
			tenants = append(tenants, sub.TenantID)
		}
	}
	sort.Strings(tenants)
	if err := s.Store.PlanRun(ctx, runID, len(tenants)); err != nil {
		return err
	}
	msgs := make([]Message, len(tenants))
	for i, t := range tenants {
		msgs[i] = Message{Kind: KindTenant, RunID: runID, Period: r.Period.String(), TenantID: t}
	}
	if err := s.Queue.Send(ctx, msgs); err != nil {
		return apperr.Wrap(err, "queue tenants")
	}
	s.log().Info("billing run fanned out", "run", runID, "period", r.Period.String(), "tenants", len(tenants))
	return s.maybeComplete(ctx, runID)
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
// its invoice was computed (a subscription created meanwhile) is computed again.
func (s *Service) issue(ctx context.Context, r *Run, tenantID string) (bool, error) {
	for attempt := 0; ; attempt++ {
		created, err := s.issueOnce(ctx, r, tenantID)
		if ae := apperr.As(err); err != nil && ae.Code == "tenant_changed" && attempt < 3 {
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
	d, in, err := s.gather(ctx, tenantID, r.Period)
	if err != nil {
		return false, err
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
	for _, c := range d.changes {
		if c.Pending {
			continue
		}
		if err := s.Usage.Acknowledge(ctx, tenantID, c); err != nil && !apperr.Is(err, apperr.Conflict) {
			// The flag stays: the next invoice finds nothing more to bill and acknowledges it.
			s.log().Warn("usage flag not acknowledged", "tenant", tenantID, "err", err)
		}
	}
	return true, nil
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
